"""``failover serve``: what it refuses, and a real process draining on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import openai
import pytest

from failover import cli
from failover.mock_upstream import MockUpstream
from failover.server.serving import bind_socket, drain_bound
from tests.server.helpers import (
    CLIENT_KEY,
    MESSAGES,
    UPSTREAM_KEY,
    gateway_config,
    serve_process,
    wait_for,
    write_config,
)

Mocks = tuple[MockUpstream, MockUpstream]

_PROVIDER_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GROQ_API_KEY",
    "TOGETHER_API_KEY",
    "FIREWORKS_API_KEY",
    "OPENROUTER_API_KEY",
    "OLLAMA_BASE_URL",
    "LLM_PROVIDER",
)


def test_workers_need_redis(
    mocks: Mocks, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--workers 2 with the memory backend is refused with the advice to use Redis."""
    path = write_config(tmp_path, gateway_config(*mocks))
    code = cli.main(["serve", "--config", str(path), "--port", "0", "--workers", "2"])
    message = capsys.readouterr().err
    assert code == 2
    assert "--workers 2 needs state.backend: redis" in message


def test_public_host_without_keys_is_refused(
    mocks: Mocks, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No api_keys on a non-loopback host: refused at start, saying what to set."""
    config = gateway_config(*mocks, server={"api_keys": [], "admin_key": None})
    path = write_config(tmp_path, config)
    code = cli.main(["serve", "--config", str(path), "--host", "0.0.0.0", "--port", "0"])
    message = capsys.readouterr().err
    assert code == 2
    assert "server.host" in message
    assert "api_keys" in message


def test_zero_config_without_any_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a config file nor a provider key, serve says which variables to set."""
    monkeypatch.chdir(tmp_path)
    for name in _PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["serve", "--port", "0"]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_port_taken(mocks: Mocks, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A port in use is a clear error, not a traceback."""
    path = write_config(tmp_path, gateway_config(*mocks))
    with bind_socket("127.0.0.1", 0) as taken:
        taken.listen()
        port = taken.getsockname()[1]
        code = cli.main(["serve", "--config", str(path), "--port", str(port)])
    assert code == 1
    assert "cannot listen" in capsys.readouterr().err


def test_drain_bound_follows_the_longest_deadline(mocks: Mocks) -> None:
    """In-flight requests get the longest route deadline to finish, at least 30 s."""
    from failover.config import config_from_dict

    assert drain_bound(config_from_dict(gateway_config(*mocks, deadline=5), env={})) == 30.0
    assert drain_bound(config_from_dict(gateway_config(*mocks, deadline=90), env={})) == 90.0


@pytest.mark.slow
async def test_sigterm_drains_an_in_flight_request(mocks: Mocks, tmp_path: Path) -> None:
    """SIGTERM: the listener closes, the request in flight still completes, exit code 0."""
    main, fallback = mocks
    main.set_profile(latency="1.0")
    path = write_config(tmp_path, gateway_config(main, fallback))
    async with serve_process(path) as (process, url):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0)
        async with client:
            answer = asyncio.ensure_future(
                client.chat.completions.create(model="intent", messages=MESSAGES)
            )
            assert await wait_for(lambda: main.stats.in_flight == 1, seconds=5)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.4)  # uvicorn looks at its exit flag every 0.1 s
            async with openai.AsyncOpenAI(
                base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0
            ) as late:
                with pytest.raises(openai.APIConnectionError):
                    await late.models.list()
            completion = await answer
        assert completion.choices[0].message.content == "Hello from main. This is a mock answer."
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
    assert "draining" in log
    assert CLIENT_KEY not in log
    assert UPSTREAM_KEY not in log


@pytest.mark.slow
async def test_two_workers_share_redis(
    mocks: Mocks, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """--workers 2 with Redis: both processes serve one port, and stop cleanly on SIGTERM."""
    main, fallback = mocks
    state = {"backend": "redis", "url": redis_url, "key_prefix": redis_prefix}
    config = gateway_config(main, fallback, state=state)
    config["store"] = {"url": f"sqlite:///{tmp_path / 'requests.db'}"}  # migrated once, first
    path = write_config(tmp_path, config)
    async with serve_process(path, "--workers", "2") as (process, url):
        async with openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0
        ) as client:
            answers = await asyncio.gather(
                *(
                    client.chat.completions.create(model="intent", messages=MESSAGES)
                    for _ in range(8)
                )
            )
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 15)
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
        assert code == 0, log
    assert all(a.choices[0].message.content for a in answers)
    assert main.stats.requests == 8
    assert (tmp_path / "requests.db").exists()
