"""The incremental SSE parser: fields, multi-line data, comments, line ends, split reads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest

from failover.errors import MalformedResponse
from failover.providers.sse import SSEEvent, SSEParser, iter_events

BOUND = 1024 * 1024  # MAX_EVENT: a line's or an event's bytes


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


def feed_each(parser: SSEParser, reads: Iterable[bytes]) -> list[SSEEvent]:
    """Every event ``parser`` gives for ``reads``, fed one by one (no close)."""
    return [event for read in reads for event in parser.feed(read)]


def test_a_line_without_an_end_fails_at_the_bound() -> None:
    """A line that never ends (20 MB fed in 64 KiB reads) is malformed once it passes the
    1 MiB bound, which the error names; the parser holds nothing afterwards."""
    parser = SSEParser()
    piece = b"x" * 64 * 1024
    fed: list[bytes] = []

    def reads() -> Iterator[bytes]:
        yield b"data: "
        for _ in range(320):
            fed.append(piece)
            yield piece

    with pytest.raises(MalformedResponse) as caught:
        feed_each(parser, reads())
    assert len(fed) * len(piece) <= BOUND  # it failed at the bound, not at the end
    assert "a line over 1048576 bytes" in caught.value.message
    assert caught.value.status == 200
    assert parser.close() == []


def test_a_long_line_under_the_bound_is_parsed_whole() -> None:
    """A line fed in many reads, just under the bound, is one data value."""
    value = b"y" * (BOUND - 100)
    stream = b"data: " + value + b"\n\n"
    reads = [stream[i : i + 64 * 1024] for i in range(0, len(stream), 64 * 1024)]
    assert feed_all(*reads) == [SSEEvent("message", value.decode())]


def test_an_event_over_the_bound_fails() -> None:
    """Data lines that never reach their blank line fail once their sum passes the bound."""
    parser = SSEParser(limit=1000)
    with pytest.raises(MalformedResponse, match="an event over 1000 bytes"):
        feed_each(parser, [b"data: " + b"z" * 100 + b"\n"] * 20)
    assert parser.feed(b"data: ok\n\n") == [SSEEvent("message", "ok")]


def test_the_bound_does_not_depend_on_how_the_bytes_are_read() -> None:
    """A line of exactly the bound is parsed and one a byte longer fails, wherever the reads
    split them (a line held without its end and one read whole are bounded alike)."""
    ok = b"data: 123456\r\n\r\n"  # the line is 12 bytes
    over = b"data: 1234567\r\n\r\n"
    for size in range(1, len(over) + 1):
        reads = [ok[i : i + size] for i in range(0, len(ok), size)]
        assert feed_each(SSEParser(limit=12), reads) == [SSEEvent("message", "123456")]
        reads = [over[i : i + size] for i in range(0, len(over), size)]
        with pytest.raises(MalformedResponse, match="a line over 12 bytes"):
            feed_each(SSEParser(limit=12), reads)


@pytest.mark.parametrize("line", [b"data:\n", b"data: \n", b"data\n"])
def test_empty_data_lines_count_towards_the_event_bound(line: bytes) -> None:
    """An event is bounded by the data it joins to, newlines included: empty data lines that
    never reach their blank line fail at the bound like any other (each adds its newline)."""
    parser = SSEParser(limit=1000)
    with pytest.raises(MalformedResponse, match="an event over 1000 bytes"):
        feed_each(parser, [line * 100] * 1000)
    exact = SSEParser(limit=6)  # seven empty lines join to six newlines: at the bound
    assert feed_each(exact, [line * 7 + b"\n"]) == [SSEEvent("message", "\n" * 6)]
    with pytest.raises(MalformedResponse, match="an event over 6 bytes"):
        feed_each(SSEParser(limit=6), [line * 8])


def test_a_multi_line_event_is_bounded_by_its_joined_data() -> None:
    """Lines of one event count with the newlines that join them: ``aa``, ``bb`` and ``c`` are
    seven bytes of data, at a bound of seven; one byte more is over it."""
    at_bound = b"data:aa\ndata:bb\ndata:c\n\n"
    assert feed_each(SSEParser(limit=7), [at_bound]) == [SSEEvent("message", "aa\nbb\nc")]
    with pytest.raises(MalformedResponse, match="an event over 7 bytes"):
        feed_each(SSEParser(limit=7), [b"data:aa\ndata:bb\ndata:cc\n\n"])
