"""failover: keep LLM calls answering when providers are slow, rate-limited or down.

The public API is what this module exports (``__all__``); everything else is importable by its
module's path but may change between releases. What a request does is written down in
docs/semantics.md: a "rule N" in a docstring or comment is its rule N, "the failure table" its
table; docs/architecture.md shows how the parts fit.

>>> from failover import Gateway
>>> import failover
>>> failover.__version__
'0.2.0'
"""

from failover.call import Call, Caller, CallStream, Surface
from failover.config import Config, config_from_dict, config_from_env, load_config
from failover.errors import (
    AllTargetsFailed,
    ClientRateLimited,
    ConfigError,
    ConnectionUnavailable,
    DeadlineExceeded,
    ErrorClass,
    FailoverError,
    InvalidRequest,
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
from failover.version import VERSION as __version__

__all__ = [
    "AllTargetsFailed",
    "AttemptRecord",
    "Call",
    "CallStream",
    "Caller",
    "ChatRequest",
    "ChatResult",
    "ClientRateLimited",
    "Config",
    "ConfigError",
    "ConnectionUnavailable",
    "DeadlineExceeded",
    "ErrorClass",
    "FailoverError",
    "Gateway",
    "InvalidRequest",
    "MalformedResponse",
    "NoTargetAvailable",
    "RejectedError",
    "Surface",
    "UnknownModel",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "Usage",
    "__version__",
    "config_from_dict",
    "config_from_env",
    "load_config",
]
