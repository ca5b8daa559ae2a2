"""The OpenAPI 3.1 document of the gateway's HTTP API (``GET /openapi.json``), written by hand.

It follows what the server really checks and answers (:mod:`~failover.server.surfaces.chat_checks`,
:mod:`~failover.server.answers`), so that a schema-driven fuzzer (schemathesis) finds what the
server does not do as documented. ``model`` lists the config's routes and deployments: the
document is built for one config.
"""

from __future__ import annotations

from typing import Any

from failover.config import Config
from failover.jsondepth import MAX_DEPTH
from failover.server.surfaces.chat_checks import MAX_TOKENS_CAP, ROLES

__all__ = ["openapi_document"]

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str, *headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {_JSON: {"schema": _ref("Error")}},
    }
    if headers:
        answer["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in headers}
    return answer


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema["type"]
    kinds = kind if isinstance(kind, list) else [kind]
    return {**schema, "type": [*kinds, "null"]}


def _chat_request(models: list[str]) -> dict[str, Any]:
    number = {"type": "number"}
    return {
        "type": "object",
        "required": ["model", "messages"],
        "additionalProperties": True,  # passed through to the provider
        "properties": {
            "model": {"type": "string", "enum": models},
            "messages": {"type": "array", "minItems": 1, "items": _ref("Message")},
            "stream": _nullable({"type": "boolean"}),
            "max_tokens": _nullable({"type": "integer", "minimum": 1, "maximum": MAX_TOKENS_CAP}),
            "max_completion_tokens": _nullable(
                {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS_CAP}
            ),
            "temperature": _nullable({**number, "minimum": 0, "maximum": 2}),
            "top_p": _nullable({**number, "minimum": 0, "maximum": 1}),
            "n": _nullable({"type": "integer", "minimum": 1, "maximum": 128}),
            "presence_penalty": _nullable({**number, "minimum": -2, "maximum": 2}),
            "frequency_penalty": _nullable({**number, "minimum": -2, "maximum": 2}),
            "seed": _nullable({"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}),
            "logprobs": _nullable({"type": "boolean"}),
            "top_logprobs": _nullable({"type": "integer", "minimum": 0, "maximum": 20}),
            "parallel_tool_calls": _nullable({"type": "boolean"}),
            "user": _nullable({"type": "string"}),
            "stop": {
                "oneOf": [
                    {"type": ["string", "null"]},
                    {"type": "array", "maxItems": 4, "items": {"type": "string"}},
                ]
            },
            "tools": _nullable({"type": "array", "items": _ref("Tool")}),
            "tool_choice": {"type": ["string", "object", "null"]},
            "response_format": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"type": "string"}},
                    },
                ]
            },
            "stream_options": _nullable({"type": "object"}),
            "logit_bias": _nullable({"type": "object"}),
            "metadata": _nullable({"type": "object"}),
        },
    }


def _message() -> dict[str, Any]:
    # ``content`` may be left out or null only in an assistant's message (it then carries tool
    # calls or a refusal); every other role must say something.
    part = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
    parts = {"type": "array", "items": part}
    common = {
        "name": {"type": ["string", "null"]},
        "tool_call_id": {"type": ["string", "null"]},
        "tool_calls": {"type": ["array", "null"], "items": {"type": "object"}},
    }
    others = sorted(ROLES - {"assistant"})
    return {
        "oneOf": [
            {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"const": "assistant"},
                    "content": {"oneOf": [{"type": ["string", "null"]}, parts]},
                    **common,
                },
            },
            {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"enum": others},
                    "content": {"oneOf": [{"type": "string"}, parts]},
                    **common,
                },
            },
        ]
    }


def _tool() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string"},
            "function": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}},
            },
        },
    }


def _schemas(models: list[str]) -> dict[str, Any]:
    choice = {
        "type": "object",
        "required": ["index"],
        "properties": {"index": {"type": "integer"}, "message": {"type": "object"}},
    }
    return {
        "ChatCompletionRequest": _chat_request(models),
        "Message": _message(),
        "Tool": _tool(),
        "ChatCompletion": {
            "type": "object",
            "required": ["id", "object", "choices"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "chat.completion"},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": {"type": "array", "minItems": 1, "items": choice},
                "usage": {"type": "object"},
            },
        },
        "ChatCompletionChunk": {
            "type": "object",
            "required": ["id", "object", "choices"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "chat.completion.chunk"},
                "choices": {"type": "array", "items": {"type": "object"}},
            },
        },
        "ChatCompletionEvent": {
            # One server-sent event: a chunk, an error that ends the stream, or the end.
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "string",
                    "if": {"const": "[DONE]"},
                    "else": {
                        "contentMediaType": _JSON,
                        "contentSchema": {
                            "oneOf": [_ref("ChatCompletionChunk"), _ref("Error")],
                        },
                    },
                }
            },
        },
        "Model": {
            "type": "object",
            "required": ["id", "object", "created", "owned_by"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "model"},
                "created": {"type": "integer"},
                "owned_by": {"type": "string"},
                "kind": {"enum": ["route", "deployment"]},
                "targets": {"type": "array", "items": {"type": "string"}},
            },
        },
        "ModelList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": _ref("Model")},
            },
        },
        "DeploymentStatus": {
            "type": "object",
            "required": ["deployment", "state", "consecutive_failures"],
            "properties": {
                "deployment": {"type": "string"},
                "state": {
                    "enum": [
                        "available",
                        "rate_limited",
                        "circuit_open",
                        "half_open",
                        "not_configured",
                    ]
                },
                "consecutive_failures": {"type": "integer", "minimum": 0},
                "cooldown_ends_in": {"type": ["number", "null"]},
                "last_error": {"type": ["string", "null"]},
                "probe_in_flight": {"type": "boolean"},
                "success_rate": {"type": ["number", "null"]},
                "latency": {"type": "object"},
                "samples": {"type": "integer"},
            },
        },
        "StatusList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": _ref("DeploymentStatus")},
            },
        },
        "RequestRecord": {
            "type": "object",
            "required": ["request_id", "route", "outcome", "attempts"],
            "properties": {
                "request_id": {"type": "string"},
                "client_request_id": {"type": ["string", "null"]},
                "route": {"type": "string"},
                "outcome": {"type": "string"},
                "deployment": {"type": ["string", "null"]},
                "degraded": {"type": "boolean"},
                "attempts": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["deployment", "outcome"],
                        "properties": {
                            "deployment": {"type": "string"},
                            "outcome": {"type": "string"},
                        },
                    },
                },
            },
        },
        "Phase": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"enum": ["ok", "starting", "ready", "draining"]}},
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "code", "param"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "code": {"type": ["string", "null"]},
                        "param": {"type": ["string", "null"]},
                    },
                }
            },
        },
    }


def _headers() -> dict[str, Any]:
    def header(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "schema": schema}

    return {
        "x-request-id": header("failover's own id for the request", {"type": "string"}),
        "x-failover-deployment": header("the deployment that answered", {"type": "string"}),
        "x-failover-attempts": header("attempts made", {"type": "string", "pattern": "^[0-9]+$"}),
        "x-failover-degraded": header("the route's default response", {"enum": ["true"]}),
        "x-should-retry": header("failover already retried: do not", {"enum": ["false"]}),
        "retry-after": header("seconds to wait", {"type": "string", "pattern": "^[0-9]+$"}),
    }


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref(schema)}}}


def _get(
    summary: str, ok: dict[str, Any], *, secured: bool, extra: dict[str, Any]
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **extra}}
    if secured:
        operation["responses"]["401"] = _error("missing or invalid API key")
    else:
        operation["security"] = []
    operation["responses"]["429"] = _error("over the client's rate limit", "retry-after")
    return {"get": operation}


def _record_operation() -> dict[str, Any]:
    operation = _get(
        "One request's record: route, outcome and every attempt (losers included)",
        _ok("the record", "RequestRecord"),
        secured=True,
        extra={
            "404": _error("no such request, or another client's"),
            "503": _error("the request log cannot be read now", "retry-after"),
        },
    )
    operation["get"]["parameters"] = [
        {
            "name": "request_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[^/]+$"},
        }
    ]
    return operation


def openapi_document(config: Config) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the gateway serving ``config``."""
    models = [*config.routes, *(n for n in config.deployments if n not in config.routes)]
    chat_ok = {
        "description": "the completion, or an SSE stream of chunks ending with data: [DONE]",
        "headers": {
            "x-request-id": {"$ref": "#/components/headers/x-request-id", "required": True},
            "x-failover-attempts": {"$ref": "#/components/headers/x-failover-attempts"},
            "x-failover-deployment": {"$ref": "#/components/headers/x-failover-deployment"},
            "x-failover-degraded": {"$ref": "#/components/headers/x-failover-degraded"},
        },
        "content": {
            _JSON: {"schema": _ref("ChatCompletion")},
            "text/event-stream": {"schema": _ref("ChatCompletionEvent")},
        },
    }
    after_failover = ("x-should-retry", "x-request-id")
    chat = {
        "post": {
            "summary": "Create a chat completion over a route (OpenAI's Chat Completions API)",
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": _ref("ChatCompletionRequest")}},
            },
            "responses": {
                "200": chat_ok,
                "400": _error(
                    f"invalid request (json_too_deep: nested past {MAX_DEPTH} levels), or the "
                    "provider's own 400"
                ),
                "401": _error("missing or invalid API key"),
                "404": _error("unknown model"),
                "413": _error("body larger than server.max_body_bytes"),
                "429": _error("over the client's rate limit", "retry-after"),
                "500": _error("internal error"),
                "502": _error("every attempt failed", *after_failover),
                "503": _error(
                    "no deployment available; or shutting_down: the gateway stopped before it "
                    "answered (without x-should-retry: send it again)",
                    *after_failover,
                    "retry-after",
                ),
                "504": _error("the deadline passed, or every attempt timed out", *after_failover),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "failover",
            "version": "1",
            "description": "An OpenAI-compatible LLM gateway with retries, fallback, hedging, "
            "circuit breakers and default responses.",
        },
        "security": [{"bearer": []}, {"x-api-key": []}, {"api-key": []}],
        "paths": {
            "/v1/chat/completions": chat,
            "/v1/models": _get(
                "The routes and deployments a request may name",
                _ok("the models", "ModelList"),
                secured=True,
                extra={},
            ),
            "/v1/status": _get(
                "Each deployment's health",
                _ok("one row per deployment", "StatusList"),
                secured=True,
                extra={},
            ),
            "/health": _get("Liveness", _ok("alive", "Phase"), secured=False, extra={}),
            "/ready": _get(
                "Readiness (never depends on upstream health)",
                _ok("ready", "Phase"),
                secured=False,
                extra={"503": _ok("starting or draining", "Phase")},
            ),
            "/v1/requests/{request_id}": _record_operation(),
            "/metrics": _get(
                "Prometheus metrics",
                {
                    "description": "the Prometheus text exposition",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                secured=True,
                extra={},
            ),
            "/openapi.json": _get(
                "This document",
                {"description": "OpenAPI 3.1", "content": {_JSON: {"schema": {"type": "object"}}}},
                secured=False,
                extra={},
            ),
        },
        "components": {
            "schemas": _schemas(models),
            "headers": _headers(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "api-key": {"type": "apiKey", "in": "header", "name": "api-key"},
            },
        },
    }
