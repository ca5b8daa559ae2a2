"""The short chaos soak (``bench/soak.py --short``) and its fault schedule."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_soak() -> ModuleType:
    """``bench/soak.py`` as a module (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("soak_under_test", BENCH / "soak.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve their string annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_schedule_walks_every_fault_phase() -> None:
    """Provider a goes healthy, errors, hanging, 429 storm, healthy within one cycle."""
    soak = load_soak()
    cycle = 48.0
    seen: list[str] = []
    for tenth in range(480):
        label = soak.phase("a", tenth / 10, cycle)[0]
        if not seen or seen[-1] != label:
            seen.append(label)
    assert seen == ["healthy", "errors", "hanging", "429 storm", "healthy"]


def test_success_is_required_only_after_a_provider_recovered() -> None:
    """No success is required while nobody is healthy, and it is again GRACE after recovery."""
    soak = load_soak()
    cycle = 48.0
    assert soak.must_succeed(1.0, cycle)  # both healthy from the start
    assert not soak.must_succeed(20.0, cycle)  # a and b both hang
    b_back = 0.5 * cycle
    assert not soak.must_succeed(b_back + soak.GRACE - 0.5, cycle)
    assert soak.must_succeed(b_back + soak.GRACE + 0.1, cycle)


def test_deployment_timeout_fits_the_deadline() -> None:
    """A sequential request's three attempts (a, a again, b) fit inside its deadline."""
    soak = load_soak()
    config = soak.config({})
    assert config["routes"]["sequential"]["deadline"] > 3 * soak.TIMEOUT
    assert "default_response" not in config["routes"]["sequential"]
    assert config["routes"]["hedged"]["default_response"]


@pytest.mark.slow
def test_short_soak_passes_every_check() -> None:
    """The ~50 s soak answers on time, never 500s, recovers, and drains tasks and descriptors."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "soak.py"), "--short"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=BENCH,
    )
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, output
    assert "soak: passed" in done.stdout
    assert "FAIL:" not in done.stdout
    recovered = re.search(r"after recovery: (\d+)/(\d+) succeeded", done.stdout)
    assert recovered is not None, output
    assert int(recovered.group(2)) > 500  # the check covered most of the run
