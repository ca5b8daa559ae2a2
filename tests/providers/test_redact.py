"""The redactor: a deployment's own key and every key-looking string leave no message intact."""

from __future__ import annotations

import pytest

from failover.config import DeploymentConfig, Provider
from failover.providers import HttpClient
from failover.providers.redact import REDACTED, Redactor


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-AbCdEf0123456789",  # OpenAI project key
        "sk-proj-****abcd",  # OpenAI's masked echo
        "sk-ant-api03-AbCdEf123456",  # Anthropic
        "sk-or-v1-0123456789abcdef",  # OpenRouter
        "gsk_abcdefgh12345678",  # Groq
        "fw_3ZabcdefGHIJ1234",  # Fireworks
        "tgp_v1_abcdefgh12345678",  # Together
        "AIzaSyD-0123456789abcdefghijklmnop",  # Google
        "0123456789abcdef0123456789abcdef0123456789abcdef",  # legacy hex key
        "Bearer eyJhbGciOiJIUzI1NiJ9.payload",
        "?key=abc123",
    ],
)
def test_key_shapes_are_redacted(secret: str) -> None:
    """Every known key shape is replaced wherever it appears in a message."""
    out = Redactor()(f"error near {secret} here")
    assert secret not in out
    assert REDACTED in out


def test_own_key_is_redacted_even_without_a_known_shape() -> None:
    """The deployment's own key is removed whatever it looks like; longest first."""
    redact = Redactor(["plain-secret", "plain-secret-long", "ab"])
    assert redact("x plain-secret-long y plain-secret") == f"x {REDACTED} y {REDACTED}"
    assert repr(redact) == "<Redactor secrets=2>"


def test_ordinary_text_is_kept() -> None:
    """Words that merely contain key prefixes survive."""
    text = "task-1234567890 risk-assessment-abcdefgh model gpt-4o-mini request req_011CWdep"
    assert Redactor()(text) == text


# A key of no known shape (a self-hosted server's --api-key): only the Redactor's own list knows it.
PLAIN_KEY = "vllm-Zq7Hq2Zp9Xw4Lm8Rt3Yb6Nc1"


@pytest.mark.parametrize("inside", [4, 5, 12, 20, len(PLAIN_KEY) - 1])
def test_a_key_cut_at_the_end_of_a_text_leaves_no_part(inside: int) -> None:
    """A text that ends inside the deployment's key (a body cut at its bound) loses that tail."""
    text = "the provider said: bad key " + PLAIN_KEY[:inside]
    out = Redactor([PLAIN_KEY])(text)
    assert out == f"the provider said: bad key {REDACTED}"


@pytest.mark.parametrize(
    "cut",
    [
        "sk-proj-Ab",  # an OpenAI key cut after two characters of its own
        "gsk_ab",
        "AIzaSyD-01234",  # a Google key short of its 39 characters
        "0123456789abcdef01234",  # a hex key short of 40
        "Bearer eyJh",
    ],
)
def test_key_shapes_cut_short_at_the_end_are_redacted(cut: str) -> None:
    """A key of a known shape cut short by the end of the text is still a key."""
    out = Redactor()(f"error near {cut}")
    assert out == f"error near {REDACTED}"


def test_ordinary_ends_are_kept() -> None:
    """The tail rule takes only the start of a known secret or a key shape, not any word."""
    redact = Redactor([PLAIN_KEY])
    for text in ["ends with vll", "ends with a word", "ends with vllmX", "task-12"]:
        assert redact(text) == text


def test_urls_are_printed_without_credentials() -> None:
    """User info and query values of any URL in a message are masked; host and path stay."""
    text = "POST https://me:hunter2pw@collector:4318/otel/v1/traces?token=t0kenValue&v=1 failed"
    out = Redactor()(text)
    assert out == (
        f"POST https://{REDACTED}@collector:4318/otel/v1/traces?token={REDACTED}&v={REDACTED} "
        "failed"
    )


@pytest.mark.parametrize(
    "pair",
    ["api-key=abc123", "X-Amz-Signature=0ff1ce", "sig=abcd", "client_secret=s3cr3t", "pwd=pw"],
)
def test_values_of_secret_named_parameters_are_redacted(pair: str) -> None:
    """``name=value`` with a credential's name keeps the name and loses the value."""
    name = pair.split("=")[0]
    assert Redactor()(f"url: /v1/traces?{pair}&v=2") == f"url: /v1/traces?{name}={REDACTED}&v=2"


def test_redaction_is_idempotent() -> None:
    """Redacting a redacted text changes nothing (alerts redact what errors already did)."""
    redact = Redactor([PLAIN_KEY])
    text = f"x {PLAIN_KEY} https://u:p@h/p?key=k Bearer abcdefghijk sk-proj-abcdefgh tail vllm-Zq"
    once = redact(text)
    assert redact(once) == once
    assert PLAIN_KEY[:5] not in once


def test_an_endpoint_repr_shows_its_url_masked() -> None:
    """An Endpoint's repr names its base URL without the password or query values in it."""
    deployment = DeploymentConfig(
        name="self-hosted",
        provider=Provider.OPENAI_COMPATIBLE,
        model="m",
        api_base="https://admin:hunter2-Pw-9Xz3@llm.internal/v1?tenant=t-Zq7Hq2Zp9",
    )
    endpoint = HttpClient().endpoint(deployment, {})
    assert repr(endpoint) == (
        f"<Endpoint 'self-hosted' https://{REDACTED}@llm.internal/v1?tenant={REDACTED} timeout=30s>"
    )
