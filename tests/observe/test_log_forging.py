"""Log forging, end to end: a provider's 400 (which a client can steer) forges no log line.

A provider's 400 whose message holds ``\\nCRITICAL fake ...`` and ``\\x1b[2J`` is answered by a
route's second target, whose ``bad_request_translation`` alert quotes it. In the pytest log capture
(any logging set-up: the alert log sink escapes its own line) and in the stderr of a real
``failover serve`` (its formatter escapes every record), no record spans two lines and no ESC
byte is written; the client still gets the provider's words as they are (rule 9).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from tests.observe.test_echoed_keys import EchoingProvider, route_config
from tests.server.helpers import CLIENT_KEY, MESSAGES, running, serve_process, write_config

CONTROLS = "\t\n\r\x00\x07\x1b\x7f\x85\x9b\u2028\u2029\u202e"


@pytest.fixture
async def down() -> AsyncIterator[EchoingProvider]:
    async with EchoingProvider("down") as provider:
        yield provider


@pytest.fixture
async def forging() -> AsyncIterator[EchoingProvider]:
    async with EchoingProvider("forged") as provider:
        yield provider


async def test_a_forged_400_alert_is_one_line_in_the_log(
    down: EchoingProvider, forging: EchoingProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """The alert quoting a forged 400 is one record of one line, ESC written as \\x1b."""
    with caplog.at_level(logging.INFO):
        async with running(route_config(down, forging, "none")) as gw, gw.client() as client:
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(model="intent", messages=MESSAGES)
    # The client gets the provider's words as they are (rule 9): only log lines are escaped.
    assert "\nCRITICAL fake" in caught.value.message
    alerts = [r.getMessage() for r in caplog.records if r.name == "failover.alerts"]
    forged = [line for line in alerts if "bad_request_translation" in line]
    assert len(forged) == 1, alerts
    assert "\\nCRITICAL fake: every provider is down\\x1b[2J\\r\\u2028(end)" in forged[0]
    for message in (r.getMessage() for r in caplog.records):
        assert not any(c in message for c in CONTROLS), message
    assert "\x1b" not in caplog.text
    assert not [line for line in caplog.text.splitlines() if line.startswith("CRITICAL fake")]


@pytest.mark.slow
async def test_failover_serve_writes_no_forged_line(
    down: EchoingProvider, forging: EchoingProvider, tmp_path: Path
) -> None:
    """``failover serve``'s stderr: the forged 400 shows as one escaped line, no ESC byte."""
    path = write_config(tmp_path, route_config(down, forging, "none"))
    async with serve_process(path) as (process, url):
        async with openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0
        ) as client:
            with pytest.raises(openai.BadRequestError):
                await client.chat.completions.create(model="intent", messages=MESSAGES)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
    lines = log.splitlines()
    alert = [line for line in lines if "bad_request_translation" in line]
    assert len(alert) == 1, log
    assert "\\nCRITICAL fake: every provider is down\\x1b[2J" in alert[0]
    assert "\x1b" not in log
    assert not [line for line in lines if line.startswith("CRITICAL")]
    assert (forging.calls, down.calls) == (1, 1)
