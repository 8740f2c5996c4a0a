"""The dispatcher's routing pieces: each hub's streams, messages decoded and
framed once, and frames handed to streams."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from . import _direct
from .framing import frame
from .streams import Key, Stream, count_event_json

logger = logging.getLogger("flask_notifications.stream")

#: Event ids remembered per hub, to drop an event published twice (a
#: publish retried after a Redis failover, whose first copy went out live).
RECENT_IDS = 4096

#: Streams served between two yields of a long loop, so that other greenlets
#: (new streams, the reader) get a turn.
SLICE = 2000

#: A message decoded: hub id, history id, id key, frame (``None`` when the
#: message is not an event), recipients, ``event_id``, unread counts (a
#: message of counts, instead of an event).
Decoded = tuple[str, "str | None", Key, "bytes | None", Any, Any, "dict[str, int] | None"]


class HubStreams:
    """The open streams of one hub, indexed for routing (the caller holds the
    dispatcher's lock)."""

    __slots__ = ("all", "readers", "by_identity", "recent", "broadcast_at")

    def __init__(self) -> None:
        self.all: set[Stream] = set()
        #: The streams that carry broadcasts.
        self.readers: set[Stream] = set()
        #: Each identity's stream, or its set of streams when it has several
        #: (most users have one: a set per user would cost 200 bytes each).
        self.by_identity: dict[str, Stream | set[Stream]] = {}
        #: The newest event ids routed (insertion-ordered, capped).
        self.recent: dict[str, None] = {}
        #: When the last broadcast was routed (``time.monotonic()``).
        self.broadcast_at = float("-inf")

    def add(self, stream: Stream) -> None:
        """Register ``stream``."""
        self.all.add(stream)
        if stream.broadcasts:
            self.readers.add(stream)
        identity = stream.identity
        if identity is not None:
            mine = self.by_identity.get(identity)
            if mine is None:
                self.by_identity[identity] = stream
            elif isinstance(mine, Stream):
                self.by_identity[identity] = {mine, stream}
            else:
                mine.add(stream)

    def remove(self, stream: Stream) -> bool:
        """Unregister ``stream``; whether it was registered."""
        if stream not in self.all:
            return False
        self.all.discard(stream)
        self.readers.discard(stream)
        identity = stream.identity
        if identity is not None:
            mine = self.by_identity.get(identity)
            if mine is stream:
                del self.by_identity[identity]
            elif isinstance(mine, set):
                mine.discard(stream)
                if len(mine) == 1:
                    self.by_identity[identity] = mine.pop()
        return True

    def streams_of(self, identity: str) -> tuple[Stream, ...] | set[Stream]:
        """The streams of ``identity`` (none: an empty tuple)."""
        mine = self.by_identity.get(identity)
        if mine is None:
            return ()
        return (mine,) if isinstance(mine, Stream) else mine

    def repeated(self, event_id: str) -> bool:
        """Whether ``event_id`` was routed already; remembers it otherwise."""
        recent = self.recent
        if event_id in recent:
            return True
        recent[event_id] = None
        if len(recent) > RECENT_IDS:
            del recent[next(iter(recent))]
        return False


def decode(batch: list[tuple[str, str | None, str]], id_key: Callable[[str], Key]) -> list[Decoded]:
    """Parse and frame each message of ``batch`` once, for every stream.

    :param batch: ``(hub id, history id, event JSON)`` messages.
    :param id_key: the backend's :meth:`~flask_notifications.pubsub.backend.Backend.id_key`.
    """
    decoded: list[Decoded] = []
    for hub_id, event_id, data in batch:
        key = id_key(event_id) if event_id is not None else None
        try:
            event = json.loads(data)
            if "unread_counts" in event and "event_type" not in event:
                counts = {str(u): int(n) for u, n in event["unread_counts"].items()}
                decoded.append((hub_id, event_id, key, None, None, None, counts))
                continue
            recipients = event.get("recipients") or ()
            data_frame = frame(event_id, str(event.get("event_type") or "message"), data)
            uid = event.get("event_id")
        except (ValueError, AttributeError, TypeError):
            logger.warning("undecodable event on hub %s skipped", hub_id)
            decoded.append((hub_id, event_id, key, None, None, None, None))
            continue
        decoded.append((hub_id, event_id, key, data_frame, recipients, uid, None))
    return decoded


def deliver(targets: list[Stream], frames: list[tuple[Key, bytes]]) -> None:
    """Hand ``frames`` (one, or a run of consecutive broadcasts) to ``targets``.

    The common case is written out here rather than through
    :meth:`Stream.push <flask_notifications.stream.streams.Stream.push>`: a
    direct stream, not behind, that has not had these frames yet gets one
    non-blocking send (a method call would be a tenth of the cost of a
    delivery). Anything else goes through the stream's methods.

    :param targets: the streams.
    :param frames: ``(key, frame)`` pairs, in order.
    """
    count = len(frames)
    if count == 1:
        first = last = frames[0][0]
        data = frames[0][1]
    else:
        first, last = frames[0][0], frames[-1][0]
        data = b"".join(f for _, f in frames)
    chunked = _direct.chunk(data)  # framed once for every stream
    for start in range(0, len(targets), SLICE):
        if start:
            time.sleep(0)  # let the other greenlets run between slices
        for stream in targets[start : start + SLICE]:
            send = stream.send
            seen = stream.last_key
            if (
                send is None
                or stream.backlog is not None
                or stream.closed
                or (first is not None and seen is not None and first <= seen)
            ):
                if count == 1:
                    stream.push(first, data, chunked)
                else:
                    stream.push_run(first, last, frames, data, chunked)
                continue
            if last is not None:
                stream.last_key = last
            wire = chunked if stream.chunked else data
            try:
                sent = send(wire)
            except BlockingIOError:
                sent = 0
            except OSError:  # the client went away
                stream.close("disconnected")
                continue
            if sent != len(wire):
                stream.behind(wire, sent, count)


def deliver_counts(online: list[tuple[str, list[Stream], int]]) -> None:
    """Write an ``unread_count`` event (transient: no id) to each online user's streams.

    :param online: ``(user, their streams here, unread count)``.
    """
    now = time.time()
    for user, streams, unread in online:
        data = frame(None, "unread_count", count_event_json(user, unread, now))
        for stream in streams:
            stream.push(None, data)
