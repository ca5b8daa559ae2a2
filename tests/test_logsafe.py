"""The log formatter ``failover serve`` installs: one line per record, control characters
escaped, tracebacks kept readable with the messages quoted in them escaped (end to end:
``test_log_forging``)."""

from __future__ import annotations

import logging

from failover.logsafe import SafeFormatter, escape

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTROLS = "\t\n\r\x00\x07\x1b\x7f\x85\x9b\u2028\u2029\u202e"


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("failover.test", logging.WARNING, __file__, 1, msg, args, exc_info)


def _raised(message: str) -> BaseException:
    """An exception with ``message``, raised from another one that has it too."""
    try:
        try:
            raise KeyError(message)
        except KeyError as cause:
            raise RuntimeError(message) from cause
    except RuntimeError as exc:
        return exc


def test_every_control_character_is_escaped_visibly() -> None:
    """C0, DEL, C1, the Unicode line separators and bidi overrides become visible escapes."""
    out = escape(f"a{CONTROLS}b")
    assert out == "a\\t\\n\\r\\x00\\x07\\x1b\\x7f\\x85\\x9b\\u2028\\u2029\\u202eb"
    assert out.isprintable()
    assert escape(out) == out  # escaping twice changes nothing
    assert (
        escape("plain text, ünïcode and \\ backslashes") == "plain text, ünïcode and \\ backslashes"
    )


def test_a_record_with_outside_text_is_one_line() -> None:
    """Arguments with line breaks and escapes (a model, a provider's words) stay on one line."""
    record = _record("deployment %r answered: %s", "m\nx", "bad\nCRITICAL fake\x1b[2J")
    line = SafeFormatter(FORMAT).format(record)
    assert "\n" not in line
    assert "\x1b" not in line
    assert line.endswith(
        "WARNING failover.test: deployment 'm\\nx' answered: bad\\nCRITICAL fake\\x1b[2J"
    )


def test_a_traceback_keeps_its_lines_but_not_forged_ones() -> None:
    """A traceback stays readable; the exception messages in it (cause included) are escaped."""
    exc = _raised("upstream said\nCRITICAL fake: disk full\x1b[2J")
    text = SafeFormatter(FORMAT).format(_record("request %s failed", "req_1", exc=exc))
    lines = text.splitlines()
    assert len(lines) > 5
    assert "Traceback (most recent call last):" in lines
    assert not [line for line in lines if line.startswith("CRITICAL")]
    assert "\x1b" not in text
    assert "RuntimeError: upstream said\\nCRITICAL fake: disk full\\x1b[2J" in lines
    assert "KeyError: 'upstream said\\nCRITICAL fake: disk full\\x1b[2J'" in lines


def test_a_traceback_cached_by_another_formatter_is_escaped_too() -> None:
    """A record another handler formatted first (its raw traceback cached) is still made safe."""
    record = _record("failed", exc=_raised("x\nCRITICAL fake\x1b[2J"))
    logging.Formatter(FORMAT).format(record)  # caches the raw exc_text on the record
    assert record.exc_text is not None
    assert "\x1b" in record.exc_text
    text = SafeFormatter(FORMAT).format(record)
    assert "\x1b" not in text
    assert not [line for line in text.splitlines() if line.startswith("CRITICAL")]
