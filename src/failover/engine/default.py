"""The default response in OpenAI's shapes: what a route answers when every attempt failed."""

from __future__ import annotations

from failover.types import Completion, StreamChunk

__all__ = ["default_chunks", "default_completion"]


def default_completion(text: str, *, route: str, request_id: str, created: int) -> Completion:
    """A ``chat.completion`` whose only choice says ``text``; no tokens were used.

    >>> answer = default_completion("INTENT_FALLBACK", route="intent", request_id="r1", created=0)
    >>> answer["choices"][0]["message"]
    {'role': 'assistant', 'content': 'INTENT_FALLBACK'}
    """
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": created,
        "model": route,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def default_chunks(text: str, *, route: str, request_id: str, created: int) -> list[StreamChunk]:
    """The same answer as ``chat.completion.chunk`` objects: the text, then the finish."""

    def chunk(delta: dict[str, str], finish_reason: str | None) -> StreamChunk:
        return {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": route,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    return [chunk({"role": "assistant", "content": text}, None), chunk({}, "stop")]
