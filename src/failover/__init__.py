"""failover: keep LLM calls answering when providers are slow, rate-limited, down or misconfigured."""

from failover.errors import (
    AllTargetsFailed,
    ClientRateLimited,
    ConfigError,
    DeadlineExceeded,
    ErrorClass,
    FailoverError,
    MalformedResponse,
    NoTargetAvailable,
    RejectedError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from failover.types import AttemptRecord, ChatRequest, ChatResult, Usage

__all__ = [
    "AllTargetsFailed",
    "AttemptRecord",
    "ChatRequest",
    "ChatResult",
    "ClientRateLimited",
    "ConfigError",
    "DeadlineExceeded",
    "ErrorClass",
    "FailoverError",
    "MalformedResponse",
    "NoTargetAvailable",
    "RejectedError",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "Usage",
]
