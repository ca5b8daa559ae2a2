"""What is secret in a config, and which keys count as no key at all.

Secrets are the values at ``api_key``, ``api_keys`` and ``admin_key``, and the values of
variables whose names say they are secret (``GROQ_API_KEY``, ``DB_PASSWORD``): messages never
show them. A key that is empty or a template's placeholder (``your_openai_key_here``) is absent::

    >>> is_secret_path(("deployments", "groq", "api_key")), is_secret_variable("GROQ_API_KEY")
    (True, True)
    >>> is_absent_key("your_openai_key_here"), is_absent_key("sk-test")
    (True, False)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from failover.config.base import KeyPath

_SECRET_LEAVES = frozenset({"api_key", "api_keys", "admin_key"})
_SECRET_VARIABLE_RE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)

# Only what templates write (the seeds' `your_openai_key_here`): a dummy key such as "sk-test"
# or "xxx" may be deliberate, for a local mock upstream.
_PLACEHOLDER_RE = re.compile(
    r"^(?:your\b.*|your[_\-\s].*|.*[_\-\s]here|change[_\-]?me|placeholder)$", re.IGNORECASE
)


def is_secret_path(path: KeyPath) -> bool:
    """True when ``path`` is at or under a key field (``api_key``, ``api_keys``, ``admin_key``)."""
    return any(part in _SECRET_LEAVES for part in path if isinstance(part, str))


def is_secret_variable(name: str) -> bool:
    """True when an environment variable's name says its value is secret, wherever it is used."""
    return _SECRET_VARIABLE_RE.search(name) is not None


def secret_values(node: Any, path: KeyPath = ()) -> set[str]:
    """Every string written at a secret path of ``node``, to scrub from messages."""
    if isinstance(node, str):
        return {node} if is_secret_path(path) else set()
    found: set[str] = set()
    if isinstance(node, Mapping):
        for key, value in node.items():
            found |= secret_values(value, (*path, str(key)))
    elif isinstance(node, list | tuple):
        for index, value in enumerate(node):
            found |= secret_values(value, (*path, index))
    return found


def is_absent_key(value: str) -> bool:
    """True for an empty key or a template's ``your_openai_key_here``: no key at all."""
    text = value.strip().strip("<>\"'").strip()
    return not text or _PLACEHOLDER_RE.match(text) is not None
