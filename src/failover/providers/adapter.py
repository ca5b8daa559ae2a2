"""What every HTTP adapter shares: its deployment, its endpoint and the ``GET /models`` probe."""

from __future__ import annotations

from collections.abc import Mapping

from failover.config import DeploymentConfig
from failover.providers.http import Endpoint, HttpClient, RequestTarget

__all__ = ["HttpAdapter"]


class HttpAdapter:
    """The half of a :class:`~failover.providers.base.ChatProvider` that no wire format changes.

    ``headers`` (auth included) go on every request of the deployment's endpoint; a subclass
    adds ``complete`` and ``stream`` in its provider's format.
    """

    __slots__ = ("_deployment", "_endpoint", "_models_url")

    def __init__(
        self, deployment: DeploymentConfig, http: HttpClient, headers: Mapping[str, str]
    ) -> None:
        self._deployment = deployment
        self._endpoint: Endpoint = http.endpoint(deployment, headers)
        self._models_url: RequestTarget = self._endpoint.target("/models")

    @property
    def deployment(self) -> DeploymentConfig:
        return self._deployment

    async def probe(self) -> None:
        """``GET {base}/models``: reachable, and the key is accepted."""
        async with self._endpoint.request("GET", self._models_url) as response:
            await response.raise_for_status()
            await response.read()
