"""The redactor: a deployment's own key and every key-looking string leave no message intact."""

from __future__ import annotations

import pytest

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
