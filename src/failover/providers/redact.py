"""Keeping secrets out of messages: a deployment's own key, and anything that looks like a key.

Providers echo keys back in their errors (OpenAI: ``Incorrect API key provided: sk-proj-…``,
Google: ``Consumer 'api_key:AIza…' has been suspended``), and HTTP libraries put URLs in theirs.
Every message that leaves an adapter goes through a :class:`Redactor` first: the text as it was
read, before anything is cut from it.

Text is often cut somewhere (an error body read up to a bound), and a key may straddle the cut.
So the end of a text is read as the start of a key: a tail that is the beginning of a known
secret (four characters or more), or a key shape that the end cut short, is redacted too.

>>> redact = Redactor(["my-secret-key"])
>>> redact("bad key my-secret-key, also sk-proj-abcdefghijkl")
'bad key [REDACTED], also [REDACTED]'
>>> redact("a body cut at its bound ... my-secr")
'a body cut at its bound ... [REDACTED]'
>>> redact("see https://me:pw@example.com/v1?key=abc")
'see https://[REDACTED]@example.com/v1?key=[REDACTED]'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from failover.config.secrets import redact_url

__all__ = ["REDACTED", "Redactor"]

REDACTED = "[REDACTED]"

# The shortest beginning of a known secret that a cut text's tail is taken for.
_MIN_PARTIAL = 4

_TOKEN = r"[A-Za-z0-9._~+/=\-]"

# Parameter names that say their value is a credential (``api_key=``, ``X-Amz-Signature=``).
_SECRET_NAMES = (
    "key", "token", "secret", "sig", "signature", "password", "passwd", "pwd", "credential",
    "credentials", "auth", "session", "cookie",
)  # fmt: skip


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" for c in word)


# Shapes of real provider keys and credentials, each with what replaces it; each names who uses
# it. Each shape also matches shorter at the very end of the text (``\Z``): there, it may be a
# key cut short. Nothing here is case-insensitive or begins with an unbounded run, and each is a
# pass of its own (one alternation of them all costs twice as much): the whole body of an error is
# scanned, in linear time.
_KEY_SHAPES = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in [
        # OpenAI sk-/sk-proj-, Anthropic sk-ant-, OpenRouter sk-or-, Groq gsk_, xAI xai-,
        # Fireworks fw_, Together tgp_v1_, NVIDIA nvapi-; masked forms (sk-****abcd) too.
        (
            r"(?<![A-Za-z0-9])(?:sk|pk|rk|gsk|xai|fw|tgp|nvapi)[-_]"
            r"(?:[A-Za-z0-9_\-*.]{6,}|[A-Za-z0-9_\-*.]+\Z)",
            REDACTED,
        ),
        (r"AIza(?:[0-9A-Za-z_\-]{20,}|[0-9A-Za-z_\-]*\Z)", REDACTED),  # Google API keys
        # An Authorization header echoed back.
        (rf"(?<![A-Za-z]){_any_case('bearer')}\s+(?:{_TOKEN}{{8,}}|{_TOKEN}+\Z)", REDACTED),
        # Together's legacy hex keys.
        (r"(?<![A-Za-z0-9])(?:[0-9a-fA-F]{40,}(?![A-Za-z0-9])|[0-9a-fA-F]{16,}\Z)", REDACTED),
        # name=value (a query, a form, a config line) with a secret's name: the value goes.
        # Matched from the "=", a cheap start, the name looked at behind it (a letter first).
        (
            "=(?<=[A-Za-z]=)(?:"
            + "|".join(f"(?<={_any_case(name)}=)" for name in _SECRET_NAMES)
            + r")[^&\s\"'=]+",
            "=" + REDACTED,
        ),
    ]
)
# What each shape above begins with (no shape matches a text without one of these): one search
# spares the five passes on the short strings of every request (ids), and stops at the first hit.
_ANY_SHAPE = re.compile(
    rf"(?:sk|pk|rk|xai|fw|tgp|nvapi)[-_]|AIza|{_any_case('bearer')}|[0-9a-fA-F]{{16}}|="
)
# A URL anywhere in the text (its scheme bounded): printed as redact_url prints it.
_URLS = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{0,19}://[^\s\"'<>]+")


def _redact_url(match: re.Match[str]) -> str:
    url = match.group()
    if "@" in url or "?" in url or "#" in url:  # else redact_url has nothing to mask
        return redact_url(url, mask=REDACTED)
    return url


class Redactor:
    """Replaces the given secrets, and every key-looking string, with ``[REDACTED]``.

    Secrets shorter than four characters are ignored: replacing them would shred ordinary text
    without protecting anything. URLs are shown with their user info and query values masked.
    """

    __slots__ = ("_heads", "_secrets", "_window")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so that a key containing another key is replaced whole.
        self._secrets = tuple(
            sorted({s for s in secrets if len(s) >= _MIN_PARTIAL}, key=len, reverse=True)
        )
        # What a tail cut from a secret begins with, and how far from the end it can begin.
        heads = sorted({re.escape(s[:_MIN_PARTIAL]) for s in self._secrets})
        self._heads = re.compile("|".join(heads)) if heads else None
        self._window = len(self._secrets[0]) - 1 if self._secrets else 0

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if "://" in text:
            text = _URLS.sub(_redact_url, text)
        if _ANY_SHAPE.search(text) is not None:
            for shape, replacement in _KEY_SHAPES:
                text = shape.sub(replacement, text)
        return text if self._heads is None else self._cut_tail(text, self._heads)

    def _cut_tail(self, text: str, heads: re.Pattern[str]) -> str:
        """``text`` without a tail that begins one of the secrets (a key the text was cut in)."""
        match = heads.search(text, max(0, len(text) - self._window))
        while match is not None:
            at = match.start()
            tail = text[at:]
            if any(secret.startswith(tail) for secret in self._secrets):
                return text[:at] + REDACTED  # the first such place: the longest tail
            match = heads.search(text, at + 1)
        return text

    def __repr__(self) -> str:
        # Never the secrets themselves, only how many there are.
        return f"<Redactor secrets={len(self._secrets)}>"
