"""URLs that may carry credentials: ``redact_url`` (failover.config.secrets) is how every URL is
shown, user info, query values and the fragment masked; ``http_url_problem`` says why a URL cannot
be an http(s) base, in those terms (config errors that use it: ``test_url_errors``)."""

from __future__ import annotations

import pytest

from failover.config.secrets import http_url_problem, redact_url, url_secrets


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.example.com/v1", "https://api.example.com/v1"),
        ("https://me:pw@host:8443/v1", "https://***@host:8443/v1"),
        ("https://token@host/v1", "https://***@host/v1"),
        ("http://u:p@ss@host/p", "http://***@host/p"),  # the last "@" ends the user info
        ("https://h/openai?api-version=2024&sig=abc", "https://h/openai?api-version=***&sig=***"),
        ("https://h/p?bare-token&empty=", "https://h/p?***&empty="),
        ("https://h/p#access_token=abc", "https://h/p#***"),
        ("https://h/a@b/c", "https://h/a@b/c"),  # an "@" in the path is no user info
        ("me:pw@host/v1", "***@host/v1"),  # no scheme: still user info
        ("", ""),
    ],
)
def test_redact_url_masks_credentials_and_keeps_where_it_points(url: str, shown: str) -> None:
    """User info, every query value and the fragment are masked; scheme, host, path stay."""
    assert redact_url(url) == shown


def test_url_secrets_are_the_masked_parts() -> None:
    """The parts redact_url masks, decoded too, for a redactor of messages quoting them alone."""
    secrets = url_secrets("https://me:p%40ss@host/p?token=abc%2Fd&v=1")
    assert {"me", "p%40ss", "p@ss", "abc%2Fd", "abc/d", "1"} <= secrets
    assert "host" not in secrets


@pytest.mark.parametrize(
    "url", ["ftp://host/v1", "http://me:pw@/v1", "http://host:99999/v1", "http://[::1/", "x://h"]
)
def test_http_url_problem_refuses_what_cannot_be_called(url: str) -> None:
    """Not http(s), no host, a bad port, unparsable: each is a problem, said without secrets."""
    problem = http_url_problem(url)
    assert problem is not None
    assert problem.startswith("must be an http:// or https:// URL")
    assert "pw" not in problem
