"""The README stays true: its config example loads, and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from failover.cli import _parser
from failover.config import config_from_dict

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_config_example_loads() -> None:
    """The README's failover.yaml is a valid config with the routes and deployments it names."""
    (text,) = [block for block in _blocks("yaml") if "deployments:" in block]
    env = {"GROQ_API_KEY": "gsk-readme", "OPENAI_API_KEY": "sk-readme"}
    config = config_from_dict(yaml.safe_load(text), env=env)
    assert list(config.routes) == ["intent"]
    assert config.routes["intent"].targets == ("groq-llama", "openai-mini")
    assert config.deployments["groq-llama"].configured


@pytest.mark.parametrize(
    "line",
    [
        line
        for block in _blocks("bash")
        for line in block.splitlines()
        if ".venv/bin/failover " in line
    ],
)
def test_commands_parse(line: str) -> None:
    """Every `.venv/bin/failover ...` command the README shows is one the CLI accepts."""
    command = line.split("#")[0].split()
    start = command.index(".venv/bin/failover")
    _parser().parse_args(command[start + 1 :])
