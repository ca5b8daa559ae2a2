"""Keeping secrets out of messages: a deployment's own key, and anything that looks like a key.

Providers echo keys back in their errors (OpenAI: ``Incorrect API key provided: sk-proj-…``,
Google: ``Consumer 'api_key:AIza…' has been suspended``), and HTTP libraries put URLs in theirs.
Every message that leaves an adapter goes through a :class:`Redactor` first.

>>> redact = Redactor(["my-secret-key"])
>>> redact("bad key my-secret-key, also sk-proj-abcdefghijkl")
'bad key [REDACTED], also [REDACTED]'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "Redactor"]

REDACTED = "[REDACTED]"

# Shapes of real provider keys and credentials; each alternative names who uses it.
_KEY_LIKE = re.compile(
    "|".join(
        [
            # OpenAI sk-/sk-proj-, Anthropic sk-ant-, OpenRouter sk-or-, Groq gsk_, xAI xai-,
            # Fireworks fw_, Together tgp_v1_, NVIDIA nvapi-; masked forms (sk-****abcd) too.
            r"(?<![A-Za-z0-9])(?:sk|pk|rk|gsk|xai|fw|tgp|nvapi)[-_][A-Za-z0-9_\-*.]{6,}",
            r"AIza[0-9A-Za-z_\-]{20,}",  # Google API keys
            r"(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}",  # an Authorization header echoed back
            r"(?<![A-Za-z0-9])[0-9a-fA-F]{40,}(?![A-Za-z0-9])",  # Together's legacy hex keys
            r"(?i:(?:api[_-]?key|key|token|access_token)=)[^&\s\"']+",  # ?key=… in a URL
        ]
    )
)


class Redactor:
    """Replaces the given secrets, and every key-looking string, with ``[REDACTED]``.

    Secrets shorter than four characters are ignored: replacing them would shred ordinary text
    without protecting anything.
    """

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so that a key containing another key is replaced whole.
        self._secrets = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _KEY_LIKE.sub(REDACTED, text)

    def __repr__(self) -> str:
        # Never the secrets themselves, only how many there are.
        return f"<Redactor secrets={len(self._secrets)}>"
