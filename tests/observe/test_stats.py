"""`failover stats` on a small hand-computed store: exact figures, then the command itself."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console

from failover.cli import main
from failover.observe.records import AttemptRow, RequestRow
from failover.observe.sqlite_store import SQLiteStore
from failover.observe.stats import parse_since, percentile, read_stats, render_stats

NOW = 1_700_000_000.0


def _request(
    request_id: str,
    route: str,
    outcome: str,
    latency_ms: float,
    deployment: str | None,
    attempts: list[tuple[str, float, float | None, str, bool]],
    *,
    tokens: tuple[int, int] = (0, 0),
    cost: float = 0.0,
    fallback: bool = False,
    age: float = 100.0,
) -> RequestRow:
    return RequestRow(
        request_id=request_id,
        started_at=NOW - age,
        route=route,
        outcome=outcome,
        latency_ms=latency_ms,
        degraded=outcome == "degraded",
        deployment=deployment,
        fallback=fallback,
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        cost_usd=cost,
        attempts=tuple(
            AttemptRow(request_id, seq, name, start, end, result, hedge=hedge)
            for seq, (name, start, end, result, hedge) in enumerate(attempts)
        ),
    )


ROWS = [
    _request("r1", "intent", "success", 100, "main", [("main", 0, 100, "success", False)],
             tokens=(10, 20), cost=0.001),
    _request("r2", "intent", "success", 300, "fallback",
             [("main", 0, 50, "server_error", False), ("fallback", 50, 290, "success", False)],
             tokens=(5, 5), cost=0.002, fallback=True),
    _request("r3", "intent", "degraded", 5000, None,
             [("main", 0, 2000, "timeout", False), ("fallback", 1500, 5000, "cancelled", False)]),
    _request("r4", "intent", "rate_limit", 400, None,
             [("main", 0, 10, "rate_limit", False), ("fallback", 10, 20, "rate_limit", False)]),
    _request("r5", "chat", "success", 200, "main",
             [("main", 0, 200, "success", False), ("fallback", 150, 200, "cancelled", True)],
             tokens=(100, 50), cost=0.0002),
    _request("old", "intent", "success", 1, "main", [("main", 0, 1, "success", False)],
             age=7200),
]  # fmt: skip


async def _store(path: Path, rows: list[RequestRow]) -> SQLiteStore:
    store = SQLiteStore(str(path))
    await store.write(rows)
    return store


async def test_figures_per_route(tmp_path: Path) -> None:
    """Rates, nearest-rank percentiles, tokens and cost per route, old requests left out."""
    store = await _store(tmp_path / "log.db", ROWS)
    try:
        report = await read_stats(store, seconds=3600, now=NOW)
    finally:
        await store.aclose()
    chat, intent = report.routes
    assert (intent.route, intent.requests, intent.success, intent.fallback) == ("intent", 4, 2, 1)
    assert (intent.degraded, intent.errors) == (1, 1)
    assert (intent.success_rate, intent.fallback_rate, intent.degraded_rate) == (0.5, 0.25, 0.25)
    assert (intent.p50_ms, intent.p95_ms, intent.p99_ms) == (300, 5000, 5000)
    assert (intent.prompt_tokens, intent.completion_tokens, intent.cost_usd) == (15, 25, 0.003)
    assert (chat.requests, chat.success_rate, chat.p50_ms, chat.p99_ms) == (1, 1.0, 200, 200)
    assert report.requests == 5


async def test_figures_per_deployment(tmp_path: Path) -> None:
    """Attempts, answers, success over upstream outcomes, hedges, durations, tokens and cost."""
    store = await _store(tmp_path / "log.db", ROWS)
    try:
        report = await read_stats(store, seconds=3600, now=NOW)
    finally:
        await store.aclose()
    fallback, main_ = report.deployments
    assert (main_.attempts, main_.answered, main_.succeeded, main_.judged) == (5, 2, 2, 5)
    assert (main_.success_rate, main_.fallback_answers, main_.hedges) == (0.4, 0, 0)
    assert (main_.p50_ms, main_.p95_ms, main_.p99_ms) == (100, 200, 200)
    assert (main_.prompt_tokens, main_.completion_tokens) == (110, 70)
    assert main_.cost_usd == pytest.approx(0.0012)
    assert (fallback.attempts, fallback.answered, fallback.judged) == (4, 1, 2)
    assert (fallback.success_rate, fallback.fallback_answers, fallback.hedges) == (0.5, 1, 1)
    assert (fallback.p50_ms, fallback.p99_ms, fallback.cost_usd) == (240, 240, 0.002)


async def test_render(tmp_path: Path) -> None:
    """The tables show the figures."""
    store = await _store(tmp_path / "log.db", ROWS)
    try:
        report = await read_stats(store, seconds=3600, now=NOW)
    finally:
        await store.aclose()
    out = io.StringIO()
    render_stats(report, Console(file=out, width=200))
    text = out.getvalue()
    intent_line = next(line for line in text.splitlines() if "intent" in line)
    for cell in ("4", "50.0%", "25.0%", "300 ms", "5000 ms", "40", "0.0030"):
        assert cell in intent_line, cell
    main_line = next(line for line in text.splitlines() if "main" in line)
    assert "40.0%" in main_line


def test_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`failover stats --store URL --since 1h` prints the report; a config names the store too."""
    import asyncio

    now = time.time()
    rows = [
        RequestRow(f"r{n}", now - 60, "intent", "success", 120.0, deployment="main")
        for n in range(3)
    ]
    path = tmp_path / "log.db"
    store = asyncio.run(_store(path, rows))
    asyncio.run(store.aclose())
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["stats", "--store", f"sqlite:///{path}", "--since", "1h"]) == 0
    out = capsys.readouterr().out
    assert "intent" in out
    assert "100.0%" in out
    assert "120 ms" in out
    config = tmp_path / "failover.yaml"
    config.write_text(f"store:\n  url: sqlite:///{path}\n")
    assert main(["stats", "--config", str(config), "--since", "30m"]) == 0
    assert "intent" in capsys.readouterr().out
    assert main(["stats", "--store", f"sqlite:///{path}", "--since", "soon"]) == 2
    assert main(["stats", "--store", f"sqlite:///{tmp_path / 'nothing.db'}"]) == 1
    assert not (tmp_path / "nothing.db").exists()


def test_since_and_percentile() -> None:
    """Durations and nearest-rank percentiles."""
    assert [parse_since(t) for t in ("30s", "15m", "2h", "1d", "1w", "45")] == [
        30,
        900,
        7200,
        86400,
        604800,
        45,
    ]
    with pytest.raises(ValueError, match="bad duration"):
        parse_since("0h")
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile(list(range(1, 101)), 95) == 95
