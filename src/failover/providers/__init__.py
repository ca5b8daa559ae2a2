"""Provider adapters: one module per wire family, all behind :class:`ChatProvider`.

>>> http = HttpClient()  # one per Gateway, shared by every deployment
>>> provider = build_provider(deployment, http)  # doctest: +SKIP
>>> completion = await provider.complete(ChatRequest(messages=[...]))  # doctest: +SKIP
"""

from __future__ import annotations

from failover.config import DeploymentConfig, Provider
from failover.providers.anthropic import AnthropicProvider
from failover.providers.base import ChatProvider
from failover.providers.gemini import GeminiProvider
from failover.providers.http import HttpClient
from failover.providers.openai_compat import OpenAICompatProvider

__all__ = [
    "AnthropicProvider",
    "ChatProvider",
    "GeminiProvider",
    "HttpClient",
    "OpenAICompatProvider",
    "build_provider",
]


def build_provider(deployment: DeploymentConfig, http: HttpClient) -> ChatProvider:
    """The adapter for ``deployment.provider``, sharing the gateway's ``http`` client."""
    if deployment.provider is Provider.ANTHROPIC:
        return AnthropicProvider(deployment, http)
    if deployment.provider is Provider.GEMINI:
        return GeminiProvider(deployment, http)
    # openai, groq, together, fireworks, openrouter, ollama, openai-compatible
    return OpenAICompatProvider(deployment, http)
