"""``POST /v1/chat/completions``: OpenAI's Chat Completions, as JSON or as an SSE stream.

The engine's requests and results are already in this API's shapes, so the codec is thin: the
body checked (:mod:`~failover.server.surfaces.chat_checks`), a completion written as it is, each
chunk of a stream as ``data: {chunk}``, the end as ``data: [DONE]``, and a failure after the
commit as ``data: {"error": {...}}`` (the official SDKs raise on it). Errors are OpenAI's
``{"error": {"message", "type", "code", "param"}}``.
"""

from __future__ import annotations

import orjson

from failover.call import Call, CallStream, Surface
from failover.server import answers
from failover.server.answers import ErrorAnswer, Header
from failover.server.status import Problem
from failover.server.surfaces.base import Parsed
from failover.server.surfaces.chat_checks import parse_chat
from failover.types import NATIVE, ChatResult, StreamChunk

__all__ = ["ChatCodec", "ChatEncoder"]

_DONE = b"data: [DONE]\n\n"


class ChatEncoder:
    """One chat stream's events (it keeps no state: each chunk is written as it came)."""

    __slots__ = ()

    def start(self, stream: CallStream) -> bytes:
        return b""

    def chunk(self, chunk: StreamChunk) -> bytes:
        if NATIVE in chunk:  # what another API's provider sent, for that API's own surface
            chunk = {key: value for key, value in chunk.items() if key != NATIVE}
        return b"data: %b\n\n" % orjson.dumps(chunk)

    def done(self) -> bytes:
        return _DONE

    def failed(self, problem: Problem) -> bytes:
        body = answers.error_body(problem.message, answers.type_for(problem.status), problem.code)
        return b"data: %b\n\n" % body


_ENCODER = ChatEncoder()


class ChatCodec:
    """The OpenAI Chat Completions surface."""

    surface = Surface.CHAT
    path = "/v1/chat/completions"
    content_type: Header = (b"content-type", b"text/event-stream; charset=utf-8")

    def parse(self, body: bytes) -> Parsed:
        return parse_chat(body)

    def completion(self, result: ChatResult) -> bytes:
        completion = result.completion
        if NATIVE in completion:
            completion = {key: value for key, value in completion.items() if key != NATIVE}
        return orjson.dumps(completion)

    def encoder(self, call: Call) -> ChatEncoder:
        return _ENCODER

    def error(self, problem: Problem) -> ErrorAnswer:
        return answers.openai_error(problem)

    def __repr__(self) -> str:
        return f"<ChatCodec {self.path}>"
