"""What is secret in a config, and which keys count as no key at all.

Secrets are the values at ``api_key``, ``api_keys`` and ``admin_key``, and the values of
variables whose names say they are secret (``GROQ_API_KEY``, ``DB_PASSWORD``): messages never
show them. A key that is empty or a template's placeholder (``your_openai_key_here``) is absent::

    >>> is_secret_path(("deployments", "groq", "api_key")), is_secret_variable("GROQ_API_KEY")
    (True, True)
    >>> is_absent_key("your_openai_key_here"), is_absent_key("sk-test")
    (True, False)

A URL may carry credentials too (a password, a token as the user, ``?key=``, a signed query):
:func:`redact_url` is how every URL is printed, in a message, a log line or a repr::

    >>> redact_url("https://user:pw@collector:4318/otel?token=t0p&v=1")
    'https://***@collector:4318/otel?token=***&v=***'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from yarl import URL

from failover.config.base import KeyPath

_SECRET_LEAVES = frozenset({"api_key", "api_keys", "admin_key"})
_SECRET_VARIABLE_RE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)

# Only what templates write (the seeds' `your_openai_key_here`): a dummy key such as "sk-test"
# or "xxx" may be deliberate, for a local mock upstream.
_PLACEHOLDER_RE = re.compile(
    r"^(?:your\b.*|your[_\-\s].*|.*[_\-\s]here|change[_\-]?me|placeholder)$", re.IGNORECASE
)

MASK = "***"
"""What stands for a masked part of a URL."""

# A scheme (bounded: the pattern is also run over free text) and the user info before the last
# "@" of the authority. Without a scheme, "user:pw@host/..." is read the same way.
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.\-]{0,19}://)?)[^/?#@\s]*(?:@[^/?#@\s]*)*@")


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


def redact_url(url: str, *, mask: str = MASK) -> str:
    """``url`` fit to print: its user info, every query value and the fragment masked.

    Which query parameter holds a credential cannot be told in general (``key``, ``sig``,
    ``X-Amz-Credential``, a bare token): every value is masked, the names are kept. The host and
    the path stay, so the URL still says where it points. Never raises, whatever ``url`` is.

    >>> redact_url("http://127.0.0.1:4318/v1/traces")
    'http://127.0.0.1:4318/v1/traces'
    >>> redact_url("https://x.openai.azure.com/openai?api-version=2024-06-01&sig=abc#frag")
    'https://x.openai.azure.com/openai?api-version=***&sig=***#***'
    """
    userinfo = _USERINFO.match(url)
    if userinfo is not None:
        url = userinfo.group(1) + mask + "@" + url[userinfo.end() :]
    rest, hash_mark, fragment = url.partition("#")
    base, question_mark, query = rest.partition("?")
    if query:
        query = "&".join(_masked_parameter(part, mask) for part in query.split("&"))
    return base + question_mark + query + hash_mark + (mask if fragment else "")


def http_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an http(s) base URL (shown through :func:`redact_url`), or None.

    >>> http_url_problem("ftp://me:pw@host/v1")
    "must be an http:// or https:// URL, got 'ftp://***@host/v1'"
    >>> http_url_problem("https://api.example.com/v1") is None
    True
    """
    try:
        parsed = URL(url)
        usable = parsed.scheme in ("http", "https") and bool(parsed.raw_host)
        parsed.port  # noqa: B018 (an out-of-range port raises only here)
    except ValueError:
        usable = False
    if usable:
        return None
    # Text with no scheme at all may be anything pasted there (a key): it is not repeated.
    shown = f", got {redact_url(url)!r}" if "://" in url else ", got text without a scheme"
    return f"must be an http:// or https:// URL{shown}"


def url_secrets(url: str) -> set[str]:
    """The parts of ``url`` that :func:`redact_url` masks (user, password, each query value, the
    fragment), for a redactor of messages that may quote them apart from the URL.

    >>> sorted(url_secrets("https://me:pw@host/p?token=abc&v=1"))
    ['1', 'abc', 'me', 'me:pw', 'pw']
    """
    found: set[str] = set()
    userinfo = _USERINFO.match(url)
    if userinfo is not None:
        info = url[len(userinfo.group(1)) : userinfo.end() - 1]
        found |= {info, *info.split(":", 1)}
    rest, _, fragment = url.partition("#")
    query = rest.partition("?")[2]
    for part in query.split("&") if query else ():
        name, equals, value = part.partition("=")
        found.add(value if equals else name)
    found.add(fragment)
    found |= {unquote(part) for part in found}
    found.discard("")
    return found


def _masked_parameter(part: str, mask: str) -> str:
    name, equals, value = part.partition("=")
    if not equals:
        return mask if name else ""  # a bare value may be a token itself
    return f"{name}={mask}" if value else part


def is_absent_key(value: str) -> bool:
    """True for an empty key or a template's ``your_openai_key_here``: no key at all."""
    text = value.strip().strip("<>\"'").strip()
    return not text or _PLACEHOLDER_RE.match(text) is not None
