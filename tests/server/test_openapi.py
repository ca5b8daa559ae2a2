"""schemathesis against /openapi.json: generated requests find no 500 and no schema violation.

The gateway runs in the test's loop in front of two healthy mocks; schemathesis' own runner (its
``st`` command, in a subprocess) loads the document, generates requests from it (boundary
values, then random ones, valid and invalid) and runs every check it has: no 5xx, statuses,
headers and bodies as documented, invalid data refused, valid data accepted, auth enforced,
405 with Allow for undocumented methods. Examples are bounded and the seed fixed, so it runs in
seconds and the same way each time.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from failover.mock_upstream import MockUpstream
from tests.server.helpers import CLIENT_KEY, gateway_config, running

Mocks = tuple[MockUpstream, MockUpstream]

ST = Path(sys.executable).with_name("st")  # schemathesis' command, beside this interpreter


@pytest.mark.slow
async def test_schemathesis_finds_nothing(mocks: Mocks, tmp_path: Path) -> None:
    """Every operation, positive and negative data, every check: no failure."""
    assert ST.exists(), "schemathesis is a dev dependency: pip install 'schemathesis>=4'"
    main, fallback = mocks
    config = gateway_config(main, fallback, default_response="DEFAULT")
    config["store"] = {"url": f"sqlite:///{tmp_path / 'requests.db'}"}
    async with running(config) as gw:
        # One real request, so that GET /v1/requests/{id} has a record to answer with.
        async with gw.client() as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="intent", messages=[{"role": "user", "content": "hi"}]
            )
        request_id = raw.headers["x-request-id"]
        (tmp_path / "schemathesis.toml").write_text(
            f'[parameters]\n"path.request_id" = "{request_id}"\n'
        )
        process = await asyncio.create_subprocess_exec(
            str(ST),
            "run",
            f"{gw.origin}/openapi.json",
            "--header",
            f"Authorization: Bearer {CLIENT_KEY}",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "20240601",
            "--generation-database",
            "none",
            "--no-color",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 120)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-6000:]
    assert "No issues found" in report
    assert "Warnings:" not in report  # e.g. an operation that only ever answered 404
    assert main.stats.requests > 0  # valid requests did reach an upstream
