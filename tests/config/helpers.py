"""Shared by the config tests: SPEC.md's example file, a minimal config, error capture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from failover.config import config_from_dict
from failover.errors import ConfigError

SPEC_EXAMPLE = """\
server:
  host: 127.0.0.1
  port: 4000
  api_keys: ["${FAILOVER_KEY}"]     # keys clients send as `Authorization: Bearer`; empty strings
                                     # are dropped; none left: no auth, allowed only on a loopback
                                     # host unless `allow_open: true`
  allow_open: false
  admin_key: ${FAILOVER_ADMIN_KEY:-} # reads every record; without it a client reads only its own
  max_body_bytes: 1048576
  rate_limits:                       # inbound, per client key (per client IP without auth);
    default: 100/minute              # absent: no inbound limit. `003_*` uses these figures.
    paths:
      /health: 300/minute

state:                               # where health, cooldowns and inbound limits live
  backend: memory                    # memory | redis
  url: redis://127.0.0.1:6379/0      # with redis; several gateways sharing it share all state

store:                               # the request log
  url: sqlite:///failover.db         # sqlite:///PATH | postgresql://... | none

alerts:
  - kind: log
  - kind: webhook                    # POSTs one JSON object per alert
    url: https://hooks.example/abc
    min_level: HIGH                  # INFO < MEDIUM < HIGH < CRITICAL
    dedup_seconds: 60                # the same (type, route, deployment) at most once per window

telemetry:
  otlp_endpoint: http://127.0.0.1:4318   # optional OpenTelemetry traces
  service_name: failover
  capture_content: false             # prompts and completions leave the gateway only when true

health:
  failure_threshold: 5               # consecutive failures that open a deployment's circuit
  recovery_seconds: 60               # open -> half-open, then one probe decides
  max_recovery_seconds: 600          # each failed probe doubles the break, up to this
  rate_limit_cooldown: 60            # after a 429 without Retry-After
  check_on_startup: true             # probe every deployment at start and log the table

deployments:
  groq-llama:
    provider: groq                   # openai | anthropic | gemini | groq | together | fireworks |
                                     # openrouter | ollama | openai-compatible
    model: llama3-8b-8192
    api_key: ${GROQ_API_KEY}
    api_base: https://api.groq.com/openai/v1   # optional: each provider has its default
    timeout: 30                      # seconds, one attempt
    max_retries: 1                   # more attempts on this deployment for retryable errors
    price: {input: 0.05, output: 0.08}   # USD per million tokens, for cost records
    verify_tls: true
  openai-mini:
    provider: openai
    model: gpt-4o-mini
    api_key: ${OPENAI_API_KEY}

routes:
  intent:
    targets: [groq-llama, openai-mini]
    hedge_after: 1.5                 # start the next target when the current one is this late
    # hedge_bounds: [0.2, 10]        # only with `auto`
    deadline: 5.5                    # whole request, seconds from arrival
    default_response: INTENT_FALLBACK   # absent: answer an error when everything failed
    finish_losers: 4.0               # a losing attempt may run on in the background this long
    retry: {backoff: 0.25, max_backoff: 4, jitter: true}
    retry_budget: {ratio: 0.2, min_per_second: 10}   # extra attempts (retries + hedges) allowed
"""

SPEC_ENV = {"FAILOVER_KEY": "client-key-1", "GROQ_API_KEY": "gsk-groq", "OPENAI_API_KEY": "sk-oa"}

DOTENV = """\
# provider keys
export GROQ_API_KEY=gsk-from-dotenv
OPENAI_API_KEY="sk-from-dotenv"   # a comment after a quoted value
FAILOVER_KEY='lit#eral'
TEAM=ops # an inline comment
MULTI="a\\nb"

EMPTY=
"""


def minimal_config(**route: Any) -> dict[str, Any]:
    """One openai deployment ``mini`` and one route ``r`` over it, with route overrides."""
    return {
        "deployments": {"mini": {"provider": "openai", "model": "gpt-4o-mini", "api_key": "sk-1"}},
        "routes": {"r": {"targets": ["mini"], **route}},
    }


def error_message(data: Any, env: dict[str, str] | None = None) -> str:
    """The message of the ConfigError that ``data`` raises."""
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, env=env or {})
    return str(info.value)


def write_file(directory: Path, text: str, name: str = "failover.yaml") -> Path:
    """Write ``text`` to ``directory/name`` (the config file by default); return its path."""
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path
