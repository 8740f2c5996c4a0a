"""The streaming response and the blueprint that serves it."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, request
from redis import exceptions as redis_exceptions

from .._state import get_state
from ..blueprint import error
from . import _direct
from ._replay import Replay
from .framing import frame, preamble
from .streams import StreamRefused

if TYPE_CHECKING:
    from ..event_hub import EventHub
    from .dispatcher import Dispatcher
    from .streams import Key, Stream

logger = logging.getLogger("flask_notifications.stream")

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def stream_response(hub: EventHub) -> Response:
    """Return the ``text/event-stream`` response of ``hub`` for the current request.

    Checks the identity and the authorizer, replays what the client missed
    (``Last-Event-ID`` header or ``lastEventId`` query argument), then streams
    live events. Frames carry ``id:`` (the history id), ``event:`` (the event
    type) and ``data:`` (the event JSON).

    :param hub: the hub to stream.
    """
    extension = get_state().extension
    identity = extension.current_identity()
    if identity is None and not hub.public:
        return error(401, f"authentication is required to stream hub {hub.label!r}")
    authorize = extension._stream_authorizer
    if authorize is not None and not authorize(identity, hub.hub_id):
        return error(403, f"not allowed to stream hub {hub.label!r}")

    last_event_id = request.headers.get("Last-Event-ID")
    if last_event_id is None:
        last_event_id = request.args.get("lastEventId")
    retry_ms = current_app.config["NOTIFICATIONS_STREAM_RETRY"]
    address = request.remote_addr if identity is None else None
    try:
        dispatcher = extension.dispatcher
        # Live events queue from here; a first connection needs no Redis round trip.
        broadcasts = extension.reads_broadcasts(hub, identity)
        stream, cursor = dispatcher.open(hub.hub_id, identity, address, broadcasts)
    except StreamRefused as refused:
        response = error(refused.status, refused.message)
        response.headers["Retry-After"] = "5"
        return response
    except Exception as exc:  # noqa: BLE001 - any backend's outage: 503, never 500
        return _unavailable(hub, exc)
    replay = None
    if last_event_id is None:
        # A first connection: a "ready" event gives the client an id now, so a
        # reconnect before its first event still replays what it missed.
        last_key = dispatcher.backend.id_key(cursor) if cursor else None
        head = frame(cursor, "ready", "{}")
    else:
        limit = current_app.config["NOTIFICATIONS_REPLAY_MAX"]
        replay = Replay(
            dispatcher.backend, hub.hub_id, identity, stream.broadcasts, last_event_id, limit
        )
        try:
            head = replay.next_page()  # the first page here: an outage is a 503
        except Exception as exc:  # noqa: BLE001
            dispatcher.close(stream)
            return _unavailable(hub, exc)
        last_key = replay.last_key
        if dispatcher.metrics is not None:
            dispatcher.metrics.replays.inc()

    # No stream_with_context: the request context (and any database session a
    # teardown handler closes) is released when the view returns, not hours later.
    sink = _direct.Sink() if dispatcher.direct else None
    body = _Body(dispatcher, stream, preamble(retry_ms) + head, last_key, replay, sink)
    response = _StreamResponse(body, mimetype="text/event-stream", headers=_HEADERS)
    response.sink = sink
    response.direct_passthrough = True  # frames are bytes already: one layer less per write
    return response


class _Body:
    """A stream's response body, for the WSGI server to iterate: the head,
    the replay and queued frames (:func:`_generate`); then, for a stream that
    became direct, nothing until it ends (:meth:`Stream.park
    <flask_notifications.stream.streams.Stream.park>`). ``close()``, which
    the server calls at the end, unregisters the stream."""

    __slots__ = ("dispatcher", "stream", "frames")

    def __init__(
        self,
        dispatcher: Dispatcher,
        stream: Stream,
        head: bytes,
        last_key: Key,
        replay: Replay | None,
        sink: _direct.Sink | None,
    ) -> None:
        self.dispatcher = dispatcher
        self.stream = stream
        self.frames: Iterator[bytes] | None = _generate(
            dispatcher, stream, head, last_key, replay, sink
        )

    def __iter__(self) -> Iterator[bytes]:
        # C iterators only: while parked, the server's greenlet keeps no frame of ours.
        return itertools.chain(self.frames, _Parking(self))

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()
        self.stream.parked = None  # the response is over: nothing to resume
        self.dispatcher.close(self.stream)


class _Parking:
    """What follows a stream's frames: for a direct stream, its parking."""

    __slots__ = ("body",)

    def __init__(self, body: _Body) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        body, self.body = self.body, None
        stream = body.stream
        if stream.send is None or stream.closed:
            return iter(())
        body.frames = None  # done: a finished generator still holds a few hundred bytes
        return stream.park()


class _StreamResponse(Response):
    """A response that keeps what the server's ``start_response`` returns
    (see :mod:`flask_notifications.stream._direct`)."""

    sink: _direct.Sink | None = None

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        if self.sink is not None:
            start_response = self.sink.start_response(start_response)
        return super().__call__(environ, start_response)


def _unavailable(hub: EventHub, exc: Exception) -> Response:
    """503 for a backend that does not answer (logged once, without a
    traceback for a plain Redis error)."""
    expected = isinstance(exc, redis_exceptions.RedisError)
    logger.log(
        logging.WARNING if expected else logging.ERROR,
        "cannot open a stream of hub %s: %s",
        hub.label,
        exc,
        exc_info=not expected,
    )
    response = error(503, "the notifications backend is unavailable; retry later")
    response.headers["Retry-After"] = "2"
    return response


def _generate(  # type: ignore[no-untyped-def]
    dispatcher: Dispatcher,
    stream: Stream,
    head: bytes,
    last_key: Key,
    replay: Replay | None,
    sink: _direct.Sink | None,
):
    written = len(head)
    direct = False
    try:
        yield head
        del head
        while replay is not None and not replay.done:
            try:
                page = replay.next_page()
            except Exception as exc:  # noqa: BLE001 - the client reconnects from its last id
                logger.warning("replay of hub %s stopped: %s", stream.hub_id, exc)
                return
            last_key = replay.last_key
            if page:
                written += len(page)
                yield page
        replay = None
        # Resumed here, the server has written everything yielded so far.
        conn = _direct.connection(sink, written) if sink is not None else None
        sink = None
        while True:
            if conn is not None and stream.go_direct(*conn, last_key):
                direct = True  # the dispatcher writes from now on: see _Parking
                return
            frames = stream.wait()
            if frames is None:
                return
            if len(frames) == 1:  # the common case: no list, no join
                key, data = frames[0]
                if key is None or last_key is None or key > last_key:
                    if key is not None:
                        last_key = key
                    yield data
                continue
            out = []
            for key, data in frames:
                if key is None:
                    out.append(data)
                elif last_key is None or key > last_key:  # replayed or backfilled already
                    out.append(data)
                    last_key = key
            if out:
                yield b"".join(out)
    finally:
        if not direct:  # a direct stream is unregistered when its response closes
            dispatcher.close(stream)


def stream(label: str) -> Response:
    """Stream the hub labelled ``label``."""
    hub = get_state().extension.get_hub(label)
    if hub is None:
        return error(404, f"no hub labelled {label!r}")
    return stream_response(hub)


def register(blueprint: Blueprint) -> None:
    """Add these routes to the extension's blueprint (by ``init_app``).

    :param blueprint: the blueprint being built.
    """
    blueprint.add_url_rule("/stream/<path:label>", view_func=stream, methods=["GET"])
