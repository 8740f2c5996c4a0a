"""A backend inside one process: :class:`MemoryPubSub`, for tests and
simple apps that run their web server and their consumers in one process.

Select it with ``NOTIFICATIONS_BACKEND =
"flask_notifications.pubsub.memory_pubsub.MemoryPubSub"`` (or ``BACKEND``).
Events reach the streams of the same process only: with gunicorn's several
workers, or Celery workers in processes of their own, use
:class:`~flask_notifications.pubsub.redis_pubsub.RedisPubSub`.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from .backend import Backend, History

if TYPE_CHECKING:
    from flask import Flask

#: Default for ``history_maxlen`` (``NOTIFICATIONS_HISTORY_MAXLEN``).
DEFAULT_HISTORY_MAXLEN = 10_000
_CLOSED = object()


class _Channel:
    __slots__ = ("history", "last", "trimmed", "listeners")

    def __init__(self, maxlen: int) -> None:
        self.history: deque[tuple[int, str]] = deque(maxlen=maxlen)
        #: The newest id published here, and the newest one trimmed away.
        self.last = 0
        self.trimmed = 0
        self.listeners: set[MemoryPubSub] = set()


class MemoryBus:
    """The shared state of every :class:`MemoryPubSub` of one application:
    the channels, their histories and their subscribers. Ids are increasing
    integers, as decimal strings (``"1"``, ``"2"``...), over all channels.

    :param history_maxlen: how many events of each channel to keep for replay.
    """

    def __init__(self, history_maxlen: int = DEFAULT_HISTORY_MAXLEN) -> None:
        self.history_maxlen = history_maxlen
        self.lock = threading.Lock()
        self.channels: dict[str, _Channel] = {}
        self.ids = itertools.count(1)
        #: The newest id this bus made.
        self.last = 0

    def channel(self, name: str) -> _Channel:
        """The channel ``name``, created on first use (under :attr:`lock`)."""
        found = self.channels.get(name)
        if found is None:
            found = self.channels[name] = _Channel(self.history_maxlen)
        return found


# One bus per application, shared by the backends from_app builds for it.
_buses: WeakKeyDictionary[Flask, MemoryBus] = WeakKeyDictionary()
_buses_lock = threading.Lock()


class MemoryPubSub(Backend):
    """Carries events between the threads (or greenlets) of one process, and
    keeps the last ``history_maxlen`` events of each hub for replay, as
    :class:`~flask_notifications.pubsub.redis_pubsub.RedisPubSub` does in
    Redis. Backends that share a :class:`MemoryBus` see each other's events.

    :param bus: the bus to share; a new one when omitted.
    :param history_maxlen: for a new bus: how many events of each hub to keep.
    """

    def __init__(
        self, bus: MemoryBus | None = None, history_maxlen: int = DEFAULT_HISTORY_MAXLEN
    ) -> None:
        if isinstance(history_maxlen, bool) or not isinstance(history_maxlen, int):
            raise ValueError(f"history_maxlen must be a positive integer, not {history_maxlen!r}")
        if history_maxlen < 1:
            raise ValueError(f"history_maxlen must be a positive integer, not {history_maxlen!r}")
        #: The bus this backend publishes and subscribes on.
        self.bus = bus if bus is not None else MemoryBus(history_maxlen)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._channels: set[str] = set()
        self._closed = False

    @classmethod
    def from_app(cls, app: Flask, broker: Any) -> MemoryPubSub:
        """A backend on ``app``'s bus (created on first use, with
        ``NOTIFICATIONS_HISTORY_MAXLEN``); ``broker`` is not used.

        :param app: the application.
        :param broker: ignored: nothing leaves the process.
        """
        with _buses_lock:
            bus = _buses.get(app)
            if bus is None:
                maxlen = app.config.get("NOTIFICATIONS_HISTORY_MAXLEN", DEFAULT_HISTORY_MAXLEN)
                bus = _buses[app] = MemoryBus(maxlen)
        return cls(bus)

    def id_key(self, event_id: str) -> int | None:
        """Return ``event_id`` (``"42"``) as an integer, or ``None`` when it
        is not one this backend makes.

        :param event_id: an id.
        """
        if not (event_id.isascii() and event_id.isdigit()) or len(event_id) > 19:
            return None
        if event_id != "0" and event_id.startswith("0"):
            return None
        return int(event_id)

    def publish(self, channel: str, message: str) -> str:
        """Append ``message`` to the hub's history and hand it to every
        subscriber, under one lock: both carry the same id.

        :param channel: a hub id.
        :param message: the event's JSON form.
        :returns: the history id.
        """
        bus = self.bus
        with bus.lock:
            number = next(bus.ids)
            bus.last = number
            found = bus.channel(channel)
            if len(found.history) == found.history.maxlen:
                found.trimmed = found.history[0][0]
            found.history.append((number, message))
            found.last = number
            event_id = str(number)
            for listener in found.listeners:
                listener._queue.put((channel, event_id, message))
        return event_id

    def publish_transient(self, channel: str, messages: list[str]) -> None:
        """Hand ``messages`` to the subscribers only: no history, no id.

        :param channel: a hub id.
        :param messages: event JSON strings.
        """
        with self.bus.lock:
            listeners = list(self.bus.channel(channel).listeners)
        for listener in listeners:
            for message in messages:
                listener._queue.put((channel, None, message))

    def history(self, channel: str, after: str | None, count: int | None = None) -> History:
        """Return what hub ``channel`` published after the id ``after``.

        :param channel: a hub id.
        :param after: the last id the reader saw; ``None`` for the whole history.
        :param count: at most this many entries.
        :returns: the entries, oldest first, or ``reset=True`` when some of
            what followed ``after`` was trimmed away, or ``after`` is
            malformed or newer than anything this bus made.
        """
        after_key = None
        if after is not None:
            after_key = self.id_key(after)
            if after_key is None:
                return History([], reset=True)
        bus = self.bus
        with bus.lock:
            if after_key is not None and after_key > bus.last:
                return History([], reset=True)  # an id from another process, or before a restart
            found = bus.channels.get(channel)
            if found is None:
                return History([], reset=after_key is not None and after_key > 0)
            if after_key is not None and after_key < found.trimmed:
                return History([], reset=True)
            start = after_key or 0
            entries = [(str(n), m) for n, m in found.history if n > start]
        return History(entries[:count] if count is not None else entries)

    def last_id(self, channel: str) -> str | None:
        """Return the id of the newest event of hub ``channel``, or ``None``.

        :param channel: a hub id.
        """
        with self.bus.lock:
            found = self.bus.channels.get(channel)
            return str(found.last) if found is not None and found.last else None

    def subscribe(self, *channels: str) -> None:
        with self.bus.lock:
            for name in channels:
                self.bus.channel(name).listeners.add(self)
                self._channels.add(name)

    def unsubscribe(self, *channels: str) -> None:
        with self.bus.lock:
            for name in channels or tuple(self._channels):
                self.bus.channel(name).listeners.discard(self)
                self._channels.discard(name)

    def listen(self) -> Iterator[dict[str, Any]]:
        """Yield each message published on a subscribed channel; returns once
        :meth:`close` is called."""
        while not self._closed:
            item = self._queue.get()
            if item is _CLOSED:
                return
            channel, event_id, message = item
            yield {"type": "message", "channel": channel, "id": event_id, "data": message}

    def close(self) -> None:
        """Unsubscribe from everything and end :meth:`listen`."""
        self.unsubscribe()
        self._closed = True
        self._queue.put(_CLOSED)
