"""Client keys: who may call the gateway, how keys are compared, and that none is ever shown."""

from __future__ import annotations

import logging

import aiohttp
import openai
import pytest
from pydantic import SecretStr

from failover.mock_upstream import MockUpstream
from failover.server import Authenticator, Identity, key_id
from failover.server.auth import presented_key
from tests.server.helpers import (
    ADMIN_KEY,
    CLIENT_KEY,
    MESSAGES,
    UPSTREAM_KEY,
    gateway_config,
    running,
)

Mocks = tuple[MockUpstream, MockUpstream]


def test_authenticator_knows_each_key() -> None:
    """A configured key is known by its fingerprint; a wrong or empty one is not known at all."""
    auth = Authenticator([SecretStr("sk-a"), SecretStr("sk-b")], SecretStr("sk-admin"))
    assert auth.identify(b"sk-b") == Identity(key_id("sk-b"), admin=False)
    assert auth.identify(b"sk-admin") == Identity(key_id("sk-admin"), admin=True)
    assert auth.identify(b"sk-a") == Identity(key_id("sk-a"), admin=False)
    assert auth.identify(b"sk-") is None
    assert auth.identify(b"sk-a ") is None
    assert auth.identify(b"") is None
    assert auth.required
    assert "sk-a" not in repr(auth)


def test_no_keys_means_open() -> None:
    """Without client keys auth is not required; an admin key alone still identifies the admin."""
    auth = Authenticator([], SecretStr("sk-admin"))
    assert not auth.required
    assert auth.identify(b"sk-admin") == Identity(key_id("sk-admin"), admin=True)


def test_key_id_is_a_short_fingerprint() -> None:
    """A key's id is 'key_' and 12 hex digits of its hash, the request log's own fingerprint."""
    fingerprint = key_id(CLIENT_KEY)
    assert fingerprint.startswith("key_")
    assert len(fingerprint) == 16
    assert CLIENT_KEY not in fingerprint
    assert fingerprint == key_id(CLIENT_KEY)
    assert fingerprint != key_id(CLIENT_KEY + "x")


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        (b"authorization", b"Bearer sk-1", b"sk-1"),
        (b"authorization", b"bearer  sk-1 ", b"sk-1"),
        (b"authorization", b"Basic c2stMQ==", None),
        (b"authorization", b"Bearer ", None),
        (b"x-api-key", b"sk-2", b"sk-2"),
        (b"api-key", b"sk-3", b"sk-3"),
        (b"cookie", b"sk-4", None),
    ],
)
def test_presented_key(name: bytes, value: bytes, key: bytes | None) -> None:
    """The key is read from Authorization: Bearer, x-api-key or api-key, and nowhere else."""
    assert presented_key(name, value) == key


async def test_keys_over_http(mocks: Mocks, caplog: pytest.LogCaptureFixture) -> None:
    """No key and a wrong key are 401; the client key and the admin key are let in."""
    main, fallback = mocks
    caplog.set_level(logging.DEBUG)
    async with running(gateway_config(main, fallback)) as gw:
        for key in (None, "sk-wrong"):
            async with gw.client(key) as client:
                with pytest.raises(openai.AuthenticationError) as caught:
                    await client.chat.completions.create(model="intent", messages=MESSAGES)
                assert caught.value.code == "invalid_api_key"
                with pytest.raises(openai.AuthenticationError):
                    await client.models.list()
        for key in (CLIENT_KEY, ADMIN_KEY):
            async with gw.client(key) as client:
                answer = await client.chat.completions.create(model="intent", messages=MESSAGES)
                assert answer.choices[0].message.content
        async with aiohttp.ClientSession() as session:
            for header in ("x-api-key", "api-key"):
                async with session.get(f"{gw.url}/models", headers={header: CLIENT_KEY}) as ok:
                    assert ok.status == 200
            # Authorization wins over the others, in whatever order they come.
            headers = {"x-api-key": CLIENT_KEY, "Authorization": "Bearer sk-wrong"}
            async with session.get(f"{gw.url}/models", headers=headers) as refused:
                assert refused.status == 401
                assert refused.headers["www-authenticate"] == "Bearer"
            for path in ("/health", "/ready", "/openapi.json"):
                async with session.get(f"{gw.origin}{path}") as probe:
                    assert probe.status == 200, path
    for secret in (CLIENT_KEY, ADMIN_KEY, UPSTREAM_KEY, "sk-wrong"):
        assert secret not in caplog.text


async def test_open_gateway_on_loopback(mocks: Mocks) -> None:
    """Without api_keys the gateway is open (loopback only): any key, or none, is served."""
    main, fallback = mocks
    config = gateway_config(main, fallback, server={"api_keys": [], "admin_key": None})
    async with running(config) as gw, gw.client("anything") as client:
        answer = await client.chat.completions.create(model="intent", messages=MESSAGES)
    assert answer.choices[0].message.content
