"""One open stream (:class:`Stream`), the refusal of one over a limit
(:class:`StreamRefused`), and the ``unread_count`` events the dispatcher
writes for online users."""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from . import _direct
from ._direct import chunk

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
    """One open SSE connection.

    A stream starts *queued*: the dispatcher queues frames, and the stream's
    response (its greenlet) writes them through the WSGI server. Once its
    replay is written, a stream whose connection can be reached becomes
    *direct* (:meth:`go_direct`): the dispatcher writes each frame to the
    socket itself, with one non-blocking send (see
    :mod:`flask_notifications.stream._direct`), and the stream's greenlet
    stays parked until the stream ends. Only when the kernel's buffer is full
    does a :attr:`backlog` form, written by a greenlet started for it.

    :param hub_id: the hub streamed.
    :param identity: the user id the stream belongs to, or ``None``.
    :param maxsize: frames that may wait before the stream counts as stalled.
    :param event_class: the wake-up primitive's class.
    :param address: the client's address (anonymous streams are capped per address).
    :param broadcasts: whether the stream carries events without recipients.
    """

    __slots__ = (
        "hub_id", "identity", "address", "broadcasts", "maxsize", "queue", "wakeup", "closed",
        "reason", "sock", "send", "chunked", "parked", "last_key", "backlog", "waiting",
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
        #: Frames for the response to write, and what wakes it (queued
        #: streams; both ``None`` once direct).
        self.queue: deque[tuple[Key, bytes]] | None = deque()
        self.wakeup: Any = event_class()
        self.closed = False
        self.reason = ""
        #: A direct stream's gevent socket, the non-blocking send of the OS
        #: socket under it (``None`` while queued), and whether the response is
        #: chunked.
        self.sock: Any = None
        self.send: Callable[[bytes], int] | None = None
        self.chunked = False
        #: What resumes the parked greenlet of a direct stream's response.
        self.parked: Any = None
        #: The id of the newest frame written (direct streams).
        self.last_key: Key = None
        #: What the kernel could not take yet (direct streams; ``None`` when
        #: the socket took everything).
        self.backlog: list[bytes] | None = None
        #: Frames in the backlog.
        self.waiting = 0

    def push(self, key: Key, data: bytes, chunked: bytes | None = None) -> None:
        """Queue or write one frame; a stream with ``maxsize`` frames waiting
        is closed instead.

        :param key: the frame's history id as a key (``None`` for heartbeats).
        :param data: the frame.
        :param chunked: the frame as an HTTP chunk, if the caller has it.
        """
        if self.closed:
            return
        if self.send is not None:
            if key is not None:
                last = self.last_key
                if last is not None and key <= last:
                    return  # written already (a backfill after a reconnect)
                self.last_key = key
            if self.chunked:
                data = chunked if chunked is not None else chunk(data)
            self.write(data, 1)
            return
        queue = self.queue
        assert queue is not None
        if len(queue) >= self.maxsize:
            self.close("queue full")
            return
        queue.append((key, data))
        # Always: with threads, the response may have taken the frames queued
        # so far and be about to wait (setting a set flag costs little).
        self.wakeup.set()

    def push_run(
        self, first: Key, last: Key, frames: list[tuple[Key, bytes]], data: bytes, chunked: bytes
    ) -> None:
        """Queue or write consecutive frames, coalesced: a direct stream gets
        them in one write.

        :param first: the first frame's id key (never ``None``).
        :param last: the last frame's id key.
        :param frames: ``(key, frame)`` pairs.
        :param data: the frames joined.
        :param chunked: ``data`` as one HTTP chunk.
        """
        if self.closed:
            return
        if self.send is None or (self.last_key is not None and first <= self.last_key):
            for key, frame in frames:  # queued, or some written already: frame by frame
                self.push(key, frame)
            return
        self.last_key = last
        self.write(chunked if self.chunked else data, len(frames))

    def write(self, data: bytes, frames: int) -> None:
        """Write to a direct stream's socket without blocking; what the kernel
        does not take goes to the backlog, and a greenlet is started to write it.

        :param data: wire bytes (chunk-framed already when the response is chunked).
        :param frames: how many frames ``data`` holds (the backlog's limit counts frames).
        """
        backlog = self.backlog
        if backlog is not None:  # behind already: keep the order
            if self.waiting >= self.maxsize:
                self.cut()
                return
            backlog.append(data)
            self.waiting += frames
            return
        try:
            sent = self.send(data)  # type: ignore[misc]
        except BlockingIOError:
            sent = 0
        except OSError:  # the client went away
            self.close("disconnected")
            return
        if sent != len(data):
            self.behind(data, sent, frames)

    def behind(self, data: bytes, sent: int, frames: int) -> None:
        """The kernel took only ``sent`` bytes of ``data``: the rest starts the
        backlog, and a greenlet is started to write it.

        :param data: what was to be written.
        :param sent: how much of it was.
        :param frames: how many frames ``data`` holds.
        """
        self.backlog = [data[sent:] if sent else data]
        self.waiting = frames
        _direct.spawn(self._flush)

    def _flush(self) -> None:
        """Write the backlog, blocking only this greenlet, until none is left
        (the dispatcher then writes directly again); end the response if the
        stream closed meanwhile."""
        try:
            while True:
                backlog = self.backlog
                if not backlog:
                    break
                self.backlog, self.waiting = [], 0
                self.sock.sendall(backlog[0] if len(backlog) == 1 else b"".join(backlog))
        except OSError:  # the client went away, or was cut for not reading
            self.closed, self.reason = True, self.reason or "disconnected"
        self.backlog = None
        if self.closed:
            self._end()

    def cut(self) -> None:
        """Close a stream whose client stopped reading; a direct stream's
        connection is ended too, so that a write blocked on it fails at once."""
        self.close("queue full")
        if self.sock is not None:
            _direct.abort(self.sock)

    def go_direct(self, sock: Any, send: Callable[[bytes], int], chunked: bool, last: Key) -> bool:
        """Switch to direct writes, if nothing is queued (called by the
        stream's greenlet; under gevent, nothing runs between the check and
        the switch).

        :param sock: the stream's gevent socket.
        :param send: the non-blocking send of the OS socket under it.
        :param chunked: whether the response is chunked.
        :param last: the id of the newest frame written so far.
        :returns: whether the stream is direct now.
        """
        if self.queue or self.closed:
            return False
        self.sock, self.send, self.chunked, self.last_key = sock, send, chunked, last
        self.queue = self.wakeup = None
        return True

    def park(self) -> Iterator[bytes]:
        """The rest of a direct stream's response: nothing, until it ends
        (called in the stream's greenlet, right after :meth:`go_direct`)."""
        self.parked, rest = _direct.park()
        return rest

    def _end(self) -> None:
        parked, self.parked = self.parked, None
        if parked is not None:
            _direct.resume(parked)

    def close(self, reason: str) -> None:
        """Ask the stream to end (its client reconnects and replays).

        :param reason: why, for the log.
        """
        if self.closed:
            return
        self.closed, self.reason = True, reason
        if self.send is None:
            self.wakeup.set()
        elif self.backlog is None:  # else its writer ends the response when done
            self._end()

    def wait(self, timeout: float | None = None) -> list[tuple[Key, bytes]] | None:
        """Block until frames arrive; return them, or ``None`` once closed
        (queued streams).

        :param timeout: seconds to wait at most (for tests); forever when ``None``.
        """
        queue = self.queue
        assert queue is not None
        while True:
            if queue:
                frames = []
                popleft = queue.popleft
                try:  # popleft, not list()+clear(): a frame pushed meanwhile stays
                    while True:
                        frames.append(popleft())
                except IndexError:
                    return frames
            if self.closed:
                return None
            self.wakeup.clear()
            if queue or self.closed:
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
