"""Log lines that outside text cannot forge: one record, one line, no terminal escapes.

Much of what failover logs was written by someone else: a provider's error message (which a
client can steer, since providers quote the request back), a model name, a request id, a path,
an exception's message. A line break in it starts what looks like a new record
(``\\nCRITICAL ...``); an ANSI escape (``\\x1b[2J``) clears the screen of whoever tails the log.
Escaping is done once, where records become text: :class:`SafeFormatter`, which
:func:`configure_logging` installs for ``failover serve``, writes every control character of a
record's message as a visible escape (``\\n``, ``\\x1b``, ``\\u2028``). A traceback keeps its own
line breaks (it is read as a block, below its record) but the messages quoted in it are escaped
the same way. The alert log sink, whose lines carry a provider's words under any logging set-up,
escapes its line with :func:`escape` itself.

>>> escape("bad request\\nCRITICAL fake\\x1b[2J")
'bad request\\\\nCRITICAL fake\\\\x1b[2J'
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from types import TracebackType

__all__ = ["SafeFormatter", "configure_logging", "escape"]

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_of(code: int) -> str:
    char = chr(code)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# C0 controls, DEL, C1 controls (NEL among them), the Unicode line and paragraph separators, and
# the bidirectional overrides and isolates (which make a line read otherwise than it is).
_CONTROLS = [
    *range(0x00, 0x20),
    0x7F,
    *range(0x80, 0xA0),
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
]
_ESCAPES = {code: _escape_of(code) for code in _CONTROLS}
# A traceback's own line breaks stay; everything else is escaped.
_ESCAPES_BUT_NEWLINE = {code: text for code, text in _ESCAPES.items() if code != 0x0A}


def escape(text: str) -> str:
    """``text`` as one line: every control character written as a visible escape.

    Backslashes are left as they are, so escaping twice changes nothing.

    >>> escape("tab\\there, line\\u2028separator")
    'tab\\\\there, line\\\\u2028separator'
    """
    return text.translate(_ESCAPES)


class SafeFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose output outside text cannot forge.

    The message part of each record (the format with its arguments in) is one line, control
    characters escaped; a traceback or stack below it keeps its lines, with the messages of the
    exceptions in it escaped and every other control character but the line break too.

    >>> record = logging.makeLogRecord({"msg": "model %r: %s", "args": ("m", "a\\nCRITICAL b")})
    >>> SafeFormatter("%(message)s").format(record)
    "model 'm': a\\\\nCRITICAL b"
    """

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = escape(self.formatMessage(record))
        # exc_text is not reused: another handler's formatter may have cached it unescaped.
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            text += "\n" + record.exc_text.translate(_ESCAPES_BUT_NEWLINE)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info).translate(_ESCAPES_BUT_NEWLINE)
        return text

    def formatException(
        self,
        ei: tuple[type[BaseException], BaseException, TracebackType | None]
        | tuple[None, None, None],
    ) -> str:
        text = super().formatException(ei)
        for exc in _chain(ei[1]):
            # What the traceback prints for the exception (its message and notes): one line.
            said = "".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n")
            safe = escape(said)
            if safe != said:
                text = text.replace(said, safe)
        return text.translate(_ESCAPES_BUT_NEWLINE)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and every exception a traceback of it shows (causes, contexts, groups)."""
    seen: set[int] = set()
    todo = [exc] if exc is not None else []
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        if isinstance(current, BaseExceptionGroup):
            todo += current.exceptions


def configure_logging(level: int, fmt: str) -> None:
    """The process' logging as ``failover serve`` wants it: ``level``, ``fmt``, on stderr,
    through a :class:`SafeFormatter` (no-op when logging was already configured, as
    :func:`logging.basicConfig`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])
