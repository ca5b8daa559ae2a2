"""The incremental SSE parser: fields, multi-line data, comments, line ends, split reads."""

from __future__ import annotations

import pytest

from failover.providers.sse import SSEEvent, SSEParser, iter_events


def feed_all(*chunks: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events + parser.close()


def test_data_lines_dispatch_on_blank_line() -> None:
    """An event is complete only at the blank line that ends it."""
    parser = SSEParser()
    assert parser.feed(b"data: hello\n") == []
    assert parser.feed(b"\n") == [SSEEvent("message", "hello")]


def test_event_name_and_id() -> None:
    """``event:`` names the event and ``id:`` is kept."""
    events = feed_all(b"event: message_start\nid: 7\ndata: {}\n\n")
    assert events == [SSEEvent("message_start", "{}", "7")]


def test_multi_line_data_joined_with_newlines() -> None:
    """Several data lines form one value, joined by newlines."""
    assert feed_all(b"data: a\ndata: b\ndata:\n\n") == [SSEEvent("message", "a\nb\n")]


def test_comments_and_blank_events_are_skipped() -> None:
    """Comment lines (pings) and events without data dispatch nothing."""
    stream = b": OPENROUTER PROCESSING\n\nevent: ping\n\ndata: x\n\n"
    assert feed_all(stream) == [SSEEvent("message", "x")]


def test_field_without_space_and_without_colon() -> None:
    """``data:x`` keeps x; a line without colon is a field with an empty value."""
    assert feed_all(b"data:x\ndata\n\n") == [SSEEvent("message", "x\n")]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(newline: bytes) -> None:
    """LF, CRLF and CR all end lines."""
    stream = b"data: a" + newline + b"data: b" + newline + newline + b"data: c" + newline * 2
    assert feed_all(stream) == [SSEEvent("message", "a\nb"), SSEEvent("message", "c")]


def test_crlf_split_across_reads() -> None:
    """A CR at the end of one read and its LF at the start of the next are one line end."""
    assert feed_all(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [SSEEvent("message", "a\nb")]


def test_cr_then_other_text_is_not_merged() -> None:
    """A lone CR ends a line even when more text follows in the same read."""
    assert feed_all(b"data: a\rdata: b", b"\n\n") == [SSEEvent("message", "a\nb")]


def test_byte_by_byte_feed_matches_whole_feed() -> None:
    """Feeding one byte at a time (UTF-8 split included) gives the same events."""
    stream = 'event: e\r\ndata: héllo ✓\r\n\r\ndata: {"k": 1}\n\n'.encode()
    whole = feed_all(stream)
    pieces = feed_all(*(stream[i : i + 1] for i in range(len(stream))))
    assert pieces == whole == [SSEEvent("e", "héllo ✓"), SSEEvent("message", '{"k": 1}')]


def test_bom_is_ignored() -> None:
    """A leading UTF-8 BOM, even split, is not part of the first field name."""
    assert feed_all(b"\xef\xbb", b"\xbfdata: a\n\n") == [SSEEvent("message", "a")]


def test_close_dispatches_last_complete_event_but_not_a_torn_line() -> None:
    """At EOF the pending complete lines dispatch; an unterminated line is dropped."""
    assert feed_all(b"data: [DONE]\n") == [SSEEvent("message", "[DONE]")]
    assert feed_all(b'data: {"choices": [{"del') == []


async def test_iter_events_over_async_chunks() -> None:
    """iter_events parses an async byte stream as it goes."""

    async def chunks():  # type: ignore[no-untyped-def]
        yield b"data: 1\n\nda"
        yield b"ta: 2\n\n"

    assert [e.data async for e in iter_events(chunks())] == ["1", "2"]
