"""failover: keep LLM calls answering when providers are slow, rate-limited or down.

>>> from failover import Gateway
"""

from failover.config import Config, config_from_dict, config_from_env, load_config
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
    UnknownModel,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from failover.gateway import Gateway
from failover.types import AttemptRecord, ChatRequest, ChatResult, Usage

__all__ = [
    "AllTargetsFailed",
    "AttemptRecord",
    "ChatRequest",
    "ChatResult",
    "ClientRateLimited",
    "Config",
    "ConfigError",
    "DeadlineExceeded",
    "ErrorClass",
    "FailoverError",
    "Gateway",
    "MalformedResponse",
    "NoTargetAvailable",
    "RejectedError",
    "UnknownModel",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "Usage",
    "config_from_dict",
    "config_from_env",
    "load_config",
]
