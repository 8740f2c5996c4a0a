"""The per-process dispatcher: one backend subscription, fanned out to streams.

Each web process runs one :class:`Dispatcher` per application, started with
the first stream. Its reader thread (a greenlet under gevent's monkey
patching) hands each message to its router, which decodes and frames each
event once and hands the bytes to the local streams allowed to see it.
Targeted events are routed through an index by identity, so an event for one
user costs the same with 10 or 10,000 streams open. One heartbeat timer
serves every stream of the process.

The router runs when the reader would wait (under gevent), so messages that
arrive together are routed together: consecutive broadcasts of one hub reach
each stream in one write. Under gevent, it writes to direct streams' sockets
itself (see :mod:`flask_notifications.stream._direct`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from . import _direct
from ._limits import Limits
from ._routing import SLICE, HubStreams, decode, deliver, deliver_counts
from ._shutdown import watch
from .framing import HEARTBEAT, frame
from .streams import Key, Stream, StreamRefused, _event_factory, count_event_json

if TYPE_CHECKING:
    from flask import Flask

    from ..pubsub.backend import Backend

logger = logging.getLogger("flask_notifications.stream")

_RESET_DATA = "{}"

#: The most consecutive broadcasts written to a stream in one write.
RUN = 64

_CHUNKED_HEARTBEAT = _direct.chunk(HEARTBEAT)


class Dispatcher:
    """Routes the events of every hub to this process's open streams.

    :param app: the application (for its backend and settings).
    :param make_backend: builds a fresh backend (again after a lost connection).
    :param hub_ids: returns the ids of the hubs to subscribe to.
    """

    def __init__(
        self, app: Flask, make_backend: Callable[[], Backend], hub_ids: Callable[[], Iterable[str]]
    ) -> None:
        config = app.config
        self.heartbeat = float(config["NOTIFICATIONS_HEARTBEAT"])
        self.queue_size = int(config["NOTIFICATIONS_STREAM_QUEUE"])
        self.limits = Limits(config)
        #: Whether streams may become direct (gevent, and the setting).
        self.direct = bool(config["NOTIFICATIONS_STREAM_DIRECT"]) and _direct.enabled()
        self.pid = os.getpid()
        extension = app.extensions.get("notifications")
        state = extension._states.get(app) if extension is not None else None
        #: The app's Prometheus metrics, or ``None``.
        self.metrics = state.metrics if state is not None else None
        self._make_backend = make_backend
        self._hub_ids = hub_ids
        self._event_class = _event_factory()
        self._lock = threading.Lock()
        self._hubs: dict[str, HubStreams] = {}
        self._subscribed: frozenset[str] = frozenset()
        self._last_ids: dict[str, str | None] = {}
        self._stopped = threading.Event()
        self._ready = threading.Event()
        #: Messages read, not routed yet: ``(hub id, history id, event JSON)``.
        self._incoming: deque[tuple[str, str | None, str]] = deque()
        self._wanted = self._event_class()  # wakes the router
        self._routing = threading.Lock()  # one batch routed at a time
        #: The backend the reader listens on; also used for history reads.
        self.backend: Backend = make_backend()
        self._listener: Backend | None = None
        self._restarting = False
        self._threads = [
            threading.Thread(target=target, name=f"notifications-{name}", daemon=True)
            for target, name in (
                (self._read_forever, "dispatcher"),
                (self._route_forever, "router"),
                (self._beat_forever, "heartbeat"),
            )
        ]
        for thread in self._threads:
            thread.start()
        self._ready.wait(10)
        watch(self)  # streams end when the process is asked to stop

    @property
    def max_streams(self) -> int:
        """``NOTIFICATIONS_MAX_STREAMS``."""
        return self.limits.max_streams

    @property
    def per_user(self) -> int:
        """``NOTIFICATIONS_STREAMS_PER_USER``."""
        return self.limits.per_user

    @property
    def per_address(self) -> int:
        """``NOTIFICATIONS_STREAMS_PER_ADDRESS``."""
        return self.limits.per_address

    # -- streams -------------------------------------------------------------------

    def open(
        self,
        hub_id: str,
        identity: str | None,
        address: str | None = None,
        broadcasts: bool = True,
    ) -> tuple[Stream, str | None]:
        """Register a stream; live events for it queue up from now on.

        No Redis round trip: the cursor is the newest id this process has
        routed on the hub, read under the same lock as the routing of live
        events, so every event after it reaches the stream and none before it does.

        :param hub_id: the hub to stream.
        :param identity: the stream's user id, or ``None`` (broadcasts only).
        :param address: the client's address, counted for anonymous streams.
        :param broadcasts: whether events without recipients reach the stream.
        :returns: the stream, and the id of the newest event before it
            (``None`` when the hub has no history yet).
        :raises StreamRefused: when a limit is reached (nothing is registered).
        """
        if hub_id not in self._last_ids:
            # A hub created after the reader started: where a backfill after a
            # lost connection starts, read once per hub and process.
            last = self.backend.last_id(hub_id)
            with self._lock:
                self._last_ids.setdefault(hub_id, last)
        stream = Stream(hub_id, identity, self.queue_size, self._event_class, address, broadcasts)
        if self._stopped.is_set():  # shutting down: the stream ends at once
            stream.close("shutdown")
        with self._lock:
            self.limits.admit(stream)
            cursor = self._last_ids.get(hub_id)
            hub = self._hubs.get(hub_id)
            if hub is None:
                hub = self._hubs[hub_id] = HubStreams()
            hub.add(stream)
            resubscribe = hub_id not in self._subscribed
        if self.metrics is not None:
            self.metrics.open_streams.inc()
        if resubscribe:  # a hub created after the reader started
            self._restart_listener()
        return stream, cursor

    def close(self, stream: Stream) -> None:
        """Unregister ``stream`` (again: a no-op).

        :param stream: a stream returned by :meth:`open`.
        """
        stream.close("closed")
        with self._lock:
            hub = self._hubs.get(stream.hub_id)
            if hub is None or not hub.remove(stream):
                return
            self.limits.release(stream)
            if not hub.all:
                del self._hubs[stream.hub_id]
        if self.metrics is not None:
            self.metrics.open_streams.dec()

    @property
    def stream_count(self) -> int:
        """How many streams are open in this process."""
        with self._lock:
            return sum(len(hub.all) for hub in self._hubs.values())

    @property
    def direct_count(self) -> int:
        """How many of them the dispatcher writes to directly (see
        :mod:`flask_notifications.stream._direct`)."""
        with self._lock:
            return sum(s.send is not None for hub in self._hubs.values() for s in hub.all)

    # -- routing ---------------------------------------------------------------------

    def dispatch(self, hub_id: str, event_id: str | None, data: str) -> None:
        """Frame one event and hand it to every local stream that may see it, now.

        :param hub_id: the hub it was published on.
        :param event_id: its history id.
        :param data: the event JSON.
        """
        with self._routing:
            self._route([(hub_id, event_id, data)])

    def _route(self, batch: list[tuple[str, str | None, str]]) -> None:
        """Route messages, in order (the caller holds :attr:`_routing`).

        Consecutive broadcasts of one hub form a run, written to each stream
        at once; anything else goes out event by event.
        """
        decoded = decode(batch, self.backend.id_key)
        if self.metrics is not None:
            self.metrics.lag([item[2] for item in decoded])
        now = time.monotonic()
        plan: list[tuple[list[Stream], list[tuple[Key, bytes]]] | list[tuple]] = []
        with self._lock:
            # Under the lock that open() reads the cursor with: a new stream
            # either gets each event or has a cursor at or after it.
            run: tuple[HubStreams, list[tuple[Key, bytes]]] | None = None
            for hub_id, event_id, key, data, recipients, uid, counts in decoded:
                if key is not None:
                    self._advance(hub_id, event_id, key)  # type: ignore[arg-type]
                hub = self._hubs.get(hub_id)
                if hub is None or (data is None and counts is None):
                    run = None
                    continue
                if counts is not None:  # unread counts, for the users online here
                    online = [(u, list(hub.streams_of(u)), n) for u, n in counts.items()]
                    plan.append([entry for entry in online if entry[1]])
                    run = None
                elif isinstance(uid, str) and hub.repeated(uid):
                    continue  # the same event again, under a new id: the streams have it
                elif recipients:
                    targets = [s for r in recipients for s in hub.streams_of(str(r))]
                    plan.append((targets, [(key, data)]))
                    run = None
                elif run is not None and run[0] is hub and key is not None and len(run[1]) < RUN:
                    run[1].append((key, data))  # the run goes on
                else:
                    frames = [(key, data)]
                    plan.append((list(hub.readers), frames))
                    run = (hub, frames) if key is not None else None
                    hub.broadcast_at = now
        for item in plan:
            if isinstance(item, tuple):
                deliver(*item)
            else:
                deliver_counts(item)

    def _advance(self, hub_id: str, event_id: str, key: Key) -> None:
        """Record ``event_id`` as the newest seen on ``hub_id`` (under the lock)."""
        seen = self._last_ids.get(hub_id)
        seen_key = self.backend.id_key(seen) if seen is not None else None
        if seen_key is None or seen_key < key:
            self._last_ids[hub_id] = event_id

    def reset_hub(self, hub_id: str, last_id: str | None) -> None:
        """Tell every stream of ``hub_id`` that events were lost.

        :param hub_id: the hub.
        :param last_id: the newest id now, so clients resume from there.
        """
        reset = frame(last_id or "", "reset", _RESET_DATA)
        key = self.backend.id_key(last_id) if last_id else None
        with self._lock:
            targets = list(self._hubs.get(hub_id, HubStreams()).all)
        with self._routing:
            deliver(targets, [(key, reset)])

    # -- the reader and the router ---------------------------------------------------

    def _restart_listener(self) -> None:
        listener = self._listener
        if listener is not None:
            self._restarting = True
            try:  # the reader reconnects, resubscribes and backfills
                listener.close()
            except Exception:  # noqa: BLE001 - the reader may be closing it at the same time
                logger.debug("subscription already closing", exc_info=True)

    def _read_forever(self) -> None:
        delay = 0.1
        first = True
        incoming, wanted = self._incoming, self._wanted
        while not self._stopped.is_set():
            listener = None
            try:
                listener = self._make_backend()
                hub_ids = frozenset(self._hub_ids()) | frozenset(self._hubs)
                if hub_ids:
                    listener.subscribe(*hub_ids)
                with self._lock:
                    self._subscribed = hub_ids
                self._listener = listener
                self._prime(hub_ids)
                if not first:
                    self._backfill()
                first = False
                self._ready.set()
                delay = 0.1
                if not hub_ids:
                    self._stopped.wait(0.5)
                    continue
                for count, message in enumerate(listener.listen(), 1):
                    incoming.append((message["channel"], message.get("id"), message["data"]))
                    wanted.set()
                    if count % 16 == 0:
                        # Under gevent, the router runs when the reader waits for
                        # the socket; in a burst read from one buffer, let it (and
                        # the streams) run every 16 messages.
                        time.sleep(0)
                # listen() ended without an error: the listener was closed (to
                # subscribe to a new hub), or the backend has nothing more.
                self._restarting = False
                self._stopped.wait(0.05)
            except Exception as exc:  # noqa: BLE001 - the reader must survive anything
                if self._stopped.is_set():
                    break
                if self._restarting:  # closed on purpose, to subscribe to a new hub
                    self._restarting = False
                    continue
                logger.warning(
                    "notifications subscription lost (%s); reconnecting in %.1fs", exc, delay
                )
                self._ready.set()
                self._stopped.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                if listener is not None:
                    try:
                        listener.close()
                    except Exception:  # noqa: BLE001
                        pass

    def _route_forever(self) -> None:
        wanted = self._wanted
        while not self._stopped.is_set():
            wanted.wait()
            wanted.clear()
            try:
                self._route_incoming()
            except Exception:  # noqa: BLE001 - the router must survive anything
                logger.exception("notifications routing failed")

    def _route_incoming(self) -> None:
        """Route what the reader has read (in order: one batch at a time)."""
        incoming = self._incoming
        with self._routing:
            while incoming:
                batch = []
                while incoming and len(batch) < 256:
                    batch.append(incoming.popleft())
                self._route(batch)

    def _prime(self, hub_ids: Iterable[str]) -> None:
        """Read the newest id of each subscribed hub not seen yet, so opening a
        stream never needs a Redis round trip of its own."""
        for hub_id in hub_ids:
            if hub_id not in self._last_ids:
                last = self.backend.last_id(hub_id)
                with self._lock:
                    self._last_ids.setdefault(hub_id, last)

    def _backfill(self) -> None:
        """After a reconnect: deliver from history what the subscription missed
        (after what was read before it, in order)."""
        self._route_incoming()
        with self._lock:
            hubs = list(self._hubs)
        for hub_id in hubs:
            after = self._last_ids.get(hub_id)
            history = self.backend.history(hub_id, after)
            if history.reset:
                self.reset_hub(hub_id, self.backend.last_id(hub_id))
                continue
            with self._routing:
                self._route([(hub_id, event_id, data) for event_id, data in history.entries])

    def _beat_forever(self) -> None:
        due = time.monotonic()
        while True:
            # At a fixed rate: the time spent beating does not delay the next beat.
            due = max(due + self.heartbeat, time.monotonic())
            if self._stopped.wait(max(0.0, due - time.monotonic())):
                return
            since = time.monotonic() - self.heartbeat
            streams: list[Stream] = []
            with self._lock:
                for hub in self._hubs.values():
                    # A hub that broadcast since the last beat wrote to every
                    # stream that reads its broadcasts: none of them is idle.
                    streams.extend(hub.all - hub.readers if hub.broadcast_at > since else hub.all)
            for count, stream in enumerate(streams, 1):
                stream.push(None, HEARTBEAT, _CHUNKED_HEARTBEAT)
                if count % SLICE == 0:
                    time.sleep(0)

    def stop(self) -> None:
        """Stop the reader, the router and the timer and end every stream."""
        self._stopped.set()
        self._wanted.set()
        self._restart_listener()
        with self._lock:
            streams = [s for hub in self._hubs.values() for s in hub.all]
        for stream in streams:
            stream.close("shutdown")
        for thread in self._threads:
            thread.join(5)


__all__ = ["Dispatcher", "Key", "Stream", "StreamRefused", "count_event_json"]
