"""One open stream (:class:`Stream`), the refusal of one over a limit
(:class:`StreamRefused`), and the ``unread_count`` events the dispatcher
writes for online users."""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

#: A frame's history id as the backend's comparable key (see
#: :meth:`Backend.id_key <flask_notifications.pubsub.backend.Backend.id_key>`);
#: ``None`` for heartbeats and transient events.
Key = Any


def count_event_json(user: str, unread: int, now: float) -> str:
    """The JSON of ``Event(None, "unread_count", "", "", recipients=[user], unread=n)``,
    written directly (one per online user each time counts change).

    :param user: the user.
    :param unread: the user's unread count.
    :param now: the event's timestamp.
    """
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),  # unique: clients drop repeated ids
            "event_type": "unread_count",
            "title": "",
            "body": "",
            "timestamp": now,
            "sender": "",
            "recipients": [user],
            "tags": [],
            "expiration_datetime": None,
            "unread": unread,
        },
        separators=(",", ":"),
    )


def _event_factory() -> Callable[[], Any]:
    """``gevent.event.Event`` when gevent patched threading, else ``threading.Event``."""
    try:
        from gevent import monkey

        if monkey.is_module_patched("threading"):
            from gevent.event import Event

            return Event
    except ImportError:  # pragma: no cover - gevent is a dependency
        pass
    return threading.Event


class Stream:
    """One open SSE connection: a bounded queue of frames and a wake-up flag.

    :param hub_id: the hub streamed.
    :param identity: the user id the stream belongs to, or ``None``.
    :param maxsize: frames that may wait before the stream counts as stalled.
    :param event_class: the wake-up primitive's class.
    :param address: the client's address (anonymous streams are capped per address).
    :param broadcasts: whether the stream carries events without recipients.
    """

    __slots__ = (
        "hub_id", "identity", "address", "broadcasts", "maxsize", "queue", "wakeup", "closed",
        "reason",
    )  # fmt: skip

    def __init__(
        self,
        hub_id: str,
        identity: str | None,
        maxsize: int,
        event_class: Callable[[], Any],
        address: str | None = None,
        broadcasts: bool = True,
    ) -> None:
        self.hub_id = hub_id
        self.identity = identity
        #: The client's address, for an anonymous stream (its limit is per address).
        self.address = address
        #: Whether events without recipients reach this stream.
        self.broadcasts = broadcasts
        self.maxsize = maxsize
        self.queue: deque[tuple[Key, bytes]] = deque()
        self.wakeup = event_class()
        self.closed = False
        self.reason = ""

    def push(self, key: Key, data: bytes) -> None:
        """Queue a frame; a stream whose queue is full is closed instead.

        :param key: the frame's history id as a tuple (``None`` for heartbeats).
        :param data: the frame.
        """
        if self.closed:
            return
        queue = self.queue
        pending = len(queue)
        if pending >= self.maxsize:
            self.close("queue full")
            return
        queue.append((key, data))
        if not pending:  # with frames pending, the stream was woken already
            self.wakeup.set()

    def close(self, reason: str) -> None:
        """Ask the stream to end (its client reconnects and replays).

        :param reason: why, for the log.
        """
        if not self.closed:
            self.closed, self.reason = True, reason
            self.wakeup.set()

    def wait(self, timeout: float | None = None) -> list[tuple[Key, bytes]] | None:
        """Block until frames arrive; return them, or ``None`` once closed.

        :param timeout: seconds to wait at most (for tests); forever when ``None``.
        """
        while True:
            if self.queue:
                frames = []
                popleft = self.queue.popleft
                try:  # popleft, not list()+clear(): a frame pushed meanwhile stays
                    while True:
                        frames.append(popleft())
                except IndexError:
                    return frames
            if self.closed:
                return None
            self.wakeup.clear()
            if self.queue or self.closed:
                continue
            if not self.wakeup.wait(timeout) and timeout is not None:
                return []


class StreamRefused(Exception):
    """A stream that a limit refuses: the view answers ``status`` with ``message``.

    :param status: 429 (this identity or address holds too many streams) or
        503 (the process holds its maximum).
    :param message: what is wrong.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


__all__ = ["Key", "Stream", "StreamRefused", "count_event_json"]
