"""Server-Sent Events framing.

The ``sse`` package writes the ``event:`` and ``data:`` lines (splitting data
on every line break). It writes event names as given, and an id only as a
block of its own, so this module strips line breaks from names and ids and
puts the ``id:`` line into the same block. Each event is framed once per
process, as bytes, and the same bytes go to every stream that may see it.
"""

from __future__ import annotations

import re

from sse import Sse

_LINE_BREAKS = re.compile(r"[\r\n\x00]")

#: A comment line: keeps idle connections (and proxies) from timing out.
HEARTBEAT = b":\n\n"


def clean(value: str) -> str:
    """Remove what would end an SSE field early (CR, LF and NUL).

    :param value: an event name or id.
    """
    return _LINE_BREAKS.sub("", value)


def frame(event_id: str | None, event_type: str, data: str) -> bytes:
    """Return one SSE message: ``id:`` (when given), ``event:`` and ``data:`` lines.

    :param event_id: the history id; ``""`` clears the client's last id.
    :param event_type: the event name (``message`` when it cleans to nothing).
    :param data: the payload; several ``data:`` lines if it has line breaks.
    """
    sse = Sse()
    sse.flush()  # drop the retry line the constructor adds
    sse.add_message(clean(event_type) or "message", data)
    body = str(sse)
    if event_id is not None:
        body = f"id: {clean(event_id)}\n{body}"
    return body.encode("utf-8")


def preamble(retry_ms: int) -> bytes:
    """The first bytes of a stream: the reconnection delay and a comment, sent
    at once so headers reach the client before any event.

    :param retry_ms: milliseconds the client waits before reconnecting.
    """
    return f"retry: {int(retry_ms)}\n:ok\n\n".encode()
