"""The OpenAI Chat Completions family: openai, groq, together, fireworks, openrouter, ollama and
any openai-compatible server.

The request goes out as the client wrote it (``params`` + ``model`` + ``messages``), the answer
comes back as it is once rule 10 has checked it. Streams end at ``data: [DONE]``; a stream
that ends without it was cut, and says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from failover.config import DeploymentConfig
from failover.errors import MalformedResponse, UpstreamConnectionError
from failover.providers.adapter import HttpAdapter
from failover.providers.http import HttpClient, api_key
from failover.providers.openai_shapes import validate_completion
from failover.types import ChatRequest, Completion, StreamChunk

__all__ = ["OpenAICompatProvider"]

_DONE = "[DONE]"


class OpenAICompatProvider(HttpAdapter):
    """A deployment that speaks OpenAI's ``POST {base}/chat/completions``.

    >>> provider = OpenAICompatProvider(deployment, http)  # doctest: +SKIP
    >>> (await provider.complete(ChatRequest(messages=[...])))["choices"][0]  # doctest: +SKIP
    """

    __slots__ = ("_chat_url",)

    def __init__(self, deployment: DeploymentConfig, http: HttpClient) -> None:
        key = api_key(deployment)
        # No key (a local Ollama, an open server): no Authorization header at all.
        super().__init__(deployment, http, {"Authorization": f"Bearer {key}"} if key else {})
        self._chat_url = self._endpoint.target("/chat/completions")

    async def complete(self, request: ChatRequest) -> Completion:
        """One completion, checked against rule 10."""
        body = self._body(request, stream=False)
        payload = await self._endpoint.post_json(self._chat_url, body)
        if isinstance(payload, dict) and payload.get("error"):
            # OpenRouter and some proxies answer 200 with an error object.
            raise self._endpoint.event_error(payload)
        return validate_completion(payload, self._endpoint.name)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """The provider's chunks as they arrive; usage on the last one (``include_usage``)."""
        endpoint = self._endpoint
        body = self._body(request, stream=True)
        done = False
        async with endpoint.post_stream(self._chat_url, body) as response:
            async for event in response.events():
                data = event.data
                if data == _DONE:
                    done = True
                    break
                if not data:
                    continue
                try:
                    payload = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise MalformedResponse(
                        "a stream event is not valid JSON", deployment=endpoint.name, status=200
                    ) from None
                if not isinstance(payload, dict):
                    raise MalformedResponse(
                        "a stream event is not a JSON object", deployment=endpoint.name, status=200
                    )
                if event.event == "error" or payload.get("error"):
                    raise endpoint.event_error(payload)
                yield payload
        if not done:
            raise UpstreamConnectionError(
                "stream cut: it ended without [DONE]", deployment=endpoint.name
            )

    def _body(self, request: ChatRequest, *, stream: bool) -> bytes:
        body: dict[str, Any] = dict(request.params)
        body["model"] = self._deployment.model
        body["messages"] = request.messages
        if stream:
            body["stream"] = True
            options = body.get("stream_options")
            body["stream_options"] = (
                {**options, "include_usage": True}
                if isinstance(options, dict)
                else {"include_usage": True}
            )
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return orjson.dumps(body)

    def __repr__(self) -> str:
        deployment = self._deployment
        return (
            f"<OpenAICompatProvider {self._endpoint.name!r} {deployment.provider.value} "
            f"{deployment.model}>"
        )
