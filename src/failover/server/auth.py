"""Client authentication: which configured key a request carries, compared in constant time.

Clients send their key as ``Authorization: Bearer KEY`` (what the OpenAI SDKs send). Two other
headers are accepted as well, because common clients only speak them: ``x-api-key``
(Anthropic-style clients) and ``api-key`` (Azure OpenAI-style clients); ``Authorization`` wins
when several are present. ``server.admin_key`` is accepted wherever a client key is, and marks
the request as the admin's (it reads every record).

The presented key is hashed once (SHA-256) and its digest compared with every configured key's
digest by :func:`hmac.compare_digest`, all of them, whatever matched: neither the time taken nor
the order of the keys tells which key (or how much of one) was right. A client is known by its
key's fingerprint (``key_`` and the first 12 hex digits of its SHA-256), never by the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import SecretStr

__all__ = ["KEY_HEADERS", "Authenticator", "Identity", "key_id", "presented_key"]

KEY_HEADERS = frozenset({b"authorization", b"x-api-key", b"api-key"})
"""The request headers that may carry a client key (lower-case, as ASGI gives them)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A client that presented a configured key: its fingerprint, and whether it is the admin."""

    key_id: str
    admin: bool = False


def key_id(key: str) -> str:
    """The fingerprint that names a key in records and logs; it cannot be turned back into it.

    Records name their client by it (``client_key_id``): 12 hex digits of the key's SHA-256.

    >>> key_id("sk-client-1")
    'key_c3d084b6952a'
    """
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def presented_key(name: bytes, value: bytes) -> bytes | None:
    """The key in one request header (lower-case ``name``), or None when it carries none.

    >>> presented_key(b"authorization", b"Bearer sk-1"), presented_key(b"x-api-key", b"sk-2")
    (b'sk-1', b'sk-2')
    """
    if name == b"authorization":
        scheme, _, token = value.partition(b" ")
        return token.strip() or None if scheme.lower() == b"bearer" else None
    if name in KEY_HEADERS:
        return value.strip() or None
    return None


class Authenticator:
    """Checks presented keys against ``api_keys`` and ``admin_key``.

    ``required`` is false when no client key is configured (an open gateway, allowed on loopback
    or with ``allow_open``): then every request passes, and a request that does present a
    configured key is still known by it.

    >>> auth = Authenticator([SecretStr("sk-client-1")], SecretStr("sk-admin"))
    >>> auth.identify(b"sk-client-1"), auth.identify(b"wrong"), auth.identify(b"sk-admin").admin
    (Identity(key_id='key_c3d084b6952a', admin=False), None, True)
    """

    __slots__ = ("_keys", "required")

    def __init__(self, api_keys: Iterable[SecretStr], admin_key: SecretStr | None = None) -> None:
        keys = [(key.get_secret_value(), False) for key in api_keys]
        self.required = bool(keys)
        if admin_key is not None and admin_key.get_secret_value():
            keys.append((admin_key.get_secret_value(), True))
        self._keys = tuple(
            (hashlib.sha256(key.encode()).digest(), Identity(key_id(key), admin))
            for key, admin in keys
        )

    def identify(self, presented: bytes | None) -> Identity | None:
        """The identity of the key presented, or None when it is no configured key."""
        if not presented:
            return None
        digest = hashlib.sha256(presented).digest()
        found: Identity | None = None
        for expected, identity in self._keys:
            # Every key is compared, even after a match: the time taken tells nothing.
            if hmac.compare_digest(digest, expected) and found is None:
                found = identity
        return found

    def __repr__(self) -> str:
        return f"<Authenticator keys={len(self._keys)} required={self.required}>"
