"""The per-process dispatcher: one backend subscription, fanned out to streams.

Each web process runs one :class:`Dispatcher` per application, started with
the first stream. Its reader thread (a greenlet under gevent's monkey
patching) decodes and frames each event once, then hands the bytes to the
local streams allowed to see it. Targeted events are routed through an index
by identity, so an event for one user costs the same with 10 or 10,000
streams open. One heartbeat timer serves every stream of the process.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ._shutdown import watch
from .framing import HEARTBEAT, frame
from .streams import Key, Stream, StreamRefused, _event_factory, count_event_json

if TYPE_CHECKING:
    from flask import Flask

    from ..pubsub.backend import Backend

logger = logging.getLogger("flask_notifications.stream")

_RESET_DATA = "{}"


#: Event ids remembered per hub, to drop an event published twice (a
#: publish retried after a Redis failover, whose first copy went out live).
RECENT_IDS = 4096


class _HubStreams:
    __slots__ = ("all", "readers", "by_identity", "recent")

    def __init__(self) -> None:
        self.all: set[Stream] = set()
        #: The streams that carry broadcasts.
        self.readers: set[Stream] = set()
        self.by_identity: dict[str, set[Stream]] = {}
        #: The newest event ids routed (insertion-ordered, capped).
        self.recent: dict[str, None] = {}

    def repeated(self, event_id: str) -> bool:
        """Whether ``event_id`` was routed already; remembers it otherwise."""
        recent = self.recent
        if event_id in recent:
            return True
        recent[event_id] = None
        if len(recent) > RECENT_IDS:
            del recent[next(iter(recent))]
        return False


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
        self.max_streams = int(config["NOTIFICATIONS_MAX_STREAMS"])
        self.per_user = int(config["NOTIFICATIONS_STREAMS_PER_USER"])
        self.per_address = int(config["NOTIFICATIONS_STREAMS_PER_ADDRESS"])
        self._count = 0
        self._per_identity: dict[str, int] = {}
        self._per_address: dict[str, int] = {}
        self.pid = os.getpid()
        self._make_backend = make_backend
        self._hub_ids = hub_ids
        self._event_class = _event_factory()
        self._lock = threading.Lock()
        self._hubs: dict[str, _HubStreams] = {}
        self._subscribed: frozenset[str] = frozenset()
        self._last_ids: dict[str, str | None] = {}
        self._stopped = threading.Event()
        self._ready = threading.Event()
        #: The backend the reader listens on; also used for history reads.
        self.backend: Backend = make_backend()
        self._listener: Backend | None = None
        self._restarting = False
        self._reader = threading.Thread(
            target=self._read_forever, name="notifications-dispatcher", daemon=True
        )
        self._timer = threading.Thread(
            target=self._beat_forever, name="notifications-heartbeat", daemon=True
        )
        self._reader.start()
        self._timer.start()
        self._ready.wait(10)
        watch(self)  # streams end when the process is asked to stop

    # -- streams -------------------------------------------------------------------

    def open(
        self,
        hub_id: str,
        identity: str | None,
        address: str | None = None,
        broadcasts: bool = True,
    ) -> tuple[Stream, str | None]:
        """Register a stream; live events for it queue up from now on.

        No Redis round trip: the cursor is the newest id this process has seen
        on the hub, read under the same lock as the routing of live events, so
        every event after it reaches the stream and none before it does.

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
            self._admit(stream)
            cursor = self._last_ids.get(hub_id)
            hub = self._hubs.get(hub_id)
            if hub is None:
                hub = self._hubs[hub_id] = _HubStreams()
            hub.all.add(stream)
            if broadcasts:
                hub.readers.add(stream)
            if identity is not None:
                hub.by_identity.setdefault(identity, set()).add(stream)
            resubscribe = hub_id not in self._subscribed
        if resubscribe:  # a hub created after the reader started
            self._restart_listener()
        return stream, cursor

    def _admit(self, stream: Stream) -> None:
        """Count ``stream`` against the limits, or refuse it (under the lock).

        Limits cap *concurrent* streams in this process: per identity, per
        address for anonymous streams, and in all. A crowd behind one proxy or
        NAT address is normal: the per-address default admits 10,000.
        """
        if self._count >= self.max_streams:
            raise StreamRefused(
                503,
                f"this server holds its maximum of {self.max_streams} streams "
                "(NOTIFICATIONS_MAX_STREAMS); retry later",
            )
        if stream.identity is not None:
            counts, key, limit, who = self._per_identity, stream.identity, self.per_user, "user"
        elif stream.address is not None:
            counts, key, limit, who = self._per_address, stream.address, self.per_address, "address"
        else:
            counts = None
        if counts is not None:
            held = counts.get(key, 0)
            if held >= limit:
                setting = f"NOTIFICATIONS_STREAMS_PER_{who.upper()}"
                raise StreamRefused(
                    429, f"too many open streams for this {who} (at most {limit}, {setting})"
                )
            counts[key] = held + 1
        self._count += 1

    def _release(self, stream: Stream) -> None:
        """Undo :meth:`_admit` for a stream that is being unregistered (under the lock)."""
        self._count -= 1
        if stream.identity is not None:
            counts, key = self._per_identity, stream.identity
        elif stream.address is not None:
            counts, key = self._per_address, stream.address
        else:
            return
        held = counts.get(key, 0) - 1
        if held > 0:
            counts[key] = held
        else:
            counts.pop(key, None)

    def close(self, stream: Stream) -> None:
        """Unregister ``stream`` (again: a no-op).

        :param stream: a stream returned by :meth:`open`.
        """
        stream.close("closed")
        with self._lock:
            hub = self._hubs.get(stream.hub_id)
            if hub is None or stream not in hub.all:
                return
            hub.all.discard(stream)
            hub.readers.discard(stream)
            self._release(stream)
            if stream.identity is not None:
                mine = hub.by_identity.get(stream.identity)
                if mine is not None:
                    mine.discard(stream)
                    if not mine:
                        del hub.by_identity[stream.identity]
            if not hub.all:
                del self._hubs[stream.hub_id]

    @property
    def stream_count(self) -> int:
        """How many streams are open in this process."""
        with self._lock:
            return sum(len(hub.all) for hub in self._hubs.values())

    # -- routing ---------------------------------------------------------------------

    def dispatch(self, hub_id: str, event_id: str | None, data: str) -> None:
        """Frame one event and queue it on every local stream that may see it.

        :param hub_id: the hub it was published on.
        :param event_id: its history id.
        :param data: the event JSON.
        """
        key = self.backend.id_key(event_id) if event_id is not None else None
        hub = self._hubs.get(hub_id)
        if hub is None:
            if key is not None:
                with self._lock:
                    self._advance(hub_id, event_id, key)  # type: ignore[arg-type]
            return
        try:
            event = json.loads(data)
            if "unread_counts" in event and "event_type" not in event:
                self._dispatch_counts(hub, event["unread_counts"])
                return
            recipients = event.get("recipients") or ()
            event_type = str(event.get("event_type") or "message")
            uid = event.get("event_id")
        except (ValueError, AttributeError, TypeError):
            logger.warning("undecodable event on hub %s skipped", hub_id)
            return
        data_frame = frame(event_id, event_type, data)
        with self._lock:
            # Under the lock that open() reads the cursor with: a new stream
            # either gets this event live or has a cursor at or after it.
            if key is not None:
                self._advance(hub_id, event_id, key)  # type: ignore[arg-type]
            if isinstance(uid, str) and hub.repeated(uid):
                return  # the same event again, under a new id: the streams have it
            if recipients:
                targets = [s for r in recipients for s in hub.by_identity.get(str(r), ())]
            else:
                targets = list(hub.readers)
        for stream in targets:
            stream.push(key, data_frame)

    def _advance(self, hub_id: str, event_id: str, key: Key) -> None:
        """Record ``event_id`` as the newest seen on ``hub_id`` (under the lock)."""
        seen = self._last_ids.get(hub_id)
        seen_key = self.backend.id_key(seen) if seen is not None else None
        if seen_key is None or seen_key < key:
            self._last_ids[hub_id] = event_id

    def _dispatch_counts(self, hub: _HubStreams, counts: dict[str, int]) -> None:
        """Frame an ``unread_count`` event for each user of ``counts`` with a
        stream here (transient: no id)."""
        with self._lock:
            online = [
                (user, list(hub.by_identity[user])) for user in counts if user in hub.by_identity
            ]
        now = time.time()
        for user, streams in online:
            data_frame = frame(None, "unread_count", count_event_json(user, int(counts[user]), now))
            for stream in streams:
                stream.push(None, data_frame)

    def reset_hub(self, hub_id: str, last_id: str | None) -> None:
        """Tell every stream of ``hub_id`` that events were lost.

        :param hub_id: the hub.
        :param last_id: the newest id now, so clients resume from there.
        """
        reset = frame(last_id or "", "reset", _RESET_DATA)
        key = self.backend.id_key(last_id) if last_id else None
        with self._lock:
            targets = list(self._hubs.get(hub_id, _HubStreams()).all)
        for stream in targets:
            stream.push(key, reset)

    # -- the reader ------------------------------------------------------------------

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
                    self.dispatch(message["channel"], message.get("id"), message["data"])
                    if count % 16 == 0:
                        # Let the streams write: under gevent, a burst read from one
                        # socket buffer would otherwise fill their queues. Between
                        # yields, frames coalesce into one write per stream.
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

    def _prime(self, hub_ids: Iterable[str]) -> None:
        """Read the newest id of each subscribed hub not seen yet, so opening a
        stream never needs a Redis round trip of its own."""
        for hub_id in hub_ids:
            if hub_id not in self._last_ids:
                last = self.backend.last_id(hub_id)
                with self._lock:
                    self._last_ids.setdefault(hub_id, last)

    def _backfill(self) -> None:
        """After a reconnect: deliver from history what the subscription missed."""
        with self._lock:
            hubs = list(self._hubs)
        for hub_id in hubs:
            after = self._last_ids.get(hub_id)
            history = self.backend.history(hub_id, after)
            if history.reset:
                self.reset_hub(hub_id, self.backend.last_id(hub_id))
                continue
            for event_id, data in history.entries:
                self.dispatch(hub_id, event_id, data)

    def _beat_forever(self) -> None:
        while not self._stopped.wait(self.heartbeat):
            with self._lock:
                streams = [s for hub in self._hubs.values() for s in hub.all]
            for stream in streams:
                stream.push(None, HEARTBEAT)

    def stop(self) -> None:
        """Stop the reader and the timer and end every stream."""
        self._stopped.set()
        self._restart_listener()
        with self._lock:
            streams = [s for hub in self._hubs.values() for s in hub.all]
        for stream in streams:
            stream.close("shutdown")
        self._reader.join(5)
        self._timer.join(5)


__all__ = ["Dispatcher", "Key", "Stream", "StreamRefused", "count_event_json"]
