"""A small HTTP/2 client for :class:`~flask_notifications.consumers.APNsConsumer`:
many requests multiplexed on one TLS connection (asyncio + the ``h2`` state
machine), with GOAWAY handled as RFC 9113 (6.8) says.

Why not httpx: httpcore 1.0 (httpx's HTTP/2 transport) fails the requests at
or below a GOAWAY's last-stream-id whose answers another thread read along
with the GOAWAY frame (encode/httpcore PR #1054, open), although APNs did
process them; sending those again would deliver a notification twice. Here
one reader task owns the connection: after GOAWAY the streams above
last-stream-id fail with :class:`Unprocessed` (safe to send again, on a new
connection), and those at or below it still get their answers, also when
they come after the GOAWAY frame (which h2 4.x would refuse: GOAWAY frames
are therefore kept from it and handled here).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

__all__ = ["H2Client", "Response", "Unprocessed"]


_GOAWAY = 0x7  # the frame type


class Unprocessed(Exception):
    """The server certainly did not process the request (it was not sent, it
    is above a GOAWAY's last-stream-id, or refused with ``REFUSED_STREAM``):
    sending it again cannot deliver it twice."""


@dataclass
class Response:
    """An answer: ``status``, lower-case ``headers`` and ``body``."""

    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class _Stream:
    done: asyncio.Future[Response]
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class _Connection:
    """One HTTP/2 connection; its reader task alone reads the socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.streams: dict[int, _Stream] = {}
        self.buffer = bytearray()  # received bytes short of a whole frame
        self.goaway: int | None = None  # the last-stream-id of a GOAWAY received
        self.error: BaseException | None = None  # the connection is dead
        self.changed = asyncio.Event()  # settings, window or streams changed
        self.h2.initiate_connection()
        self.flush()
        self.task = asyncio.ensure_future(self.read())

    @property
    def usable(self) -> bool:
        return self.goaway is None and self.error is None

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.writer.write(data)

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def read(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                self.receive(data)
                self.flush()
                if self.goaway is not None and not self.streams:
                    break  # all answered: done with this connection
        except (OSError, h2.exceptions.ProtocolError, ConnectionError) as exc:
            self.fail(exc)
        finally:
            if self.error is None:
                self.error = ConnectionError("the connection was closed after GOAWAY")
            self.wake()
            self.writer.close()

    def receive(self, data: bytes) -> None:
        """Feed ``data`` to h2, except GOAWAY frames, handled here: once h2
        has seen one it refuses the answers that may follow on the streams
        at or below its last-stream-id (RFC 9113, 6.8, lets them come)."""
        self.buffer += data
        frames = bytearray()
        while len(self.buffer) >= 9:  # a frame: 9-byte header, then its payload
            end = 9 + int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < end:
                break
            frame = bytes(self.buffer[:end])
            del self.buffer[:end]
            if frame[3] != _GOAWAY or end < 17:
                frames += frame
                continue
            for event in self.h2.receive_data(bytes(frames)):
                self.on_event(event)
            frames.clear()
            self.on_goaway(int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF)
        if frames:
            for event in self.h2.receive_data(bytes(frames)):
                self.on_event(event)

    def on_goaway(self, last_stream_id: int) -> None:
        """No new streams here; those above ``last_stream_id`` were not processed."""
        self.goaway = min(
            last_stream_id, self.goaway if self.goaway is not None else last_stream_id
        )
        for stream_id in [i for i in self.streams if i > last_stream_id]:
            lost = self.streams.pop(stream_id)
            if not lost.done.done():
                lost.done.set_exception(Unprocessed(f"above GOAWAY's {last_stream_id}"))
        self.wake()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        for stream_id, stream in list(self.streams.items()):
            if not stream.done.done():
                if self.goaway is not None and stream_id > self.goaway:
                    stream.done.set_exception(Unprocessed(f"above GOAWAY's {self.goaway}"))
                else:  # it may have been processed
                    stream.done.set_exception(ConnectionError(f"connection lost: {exc}"))
        self.streams.clear()

    def on_event(self, event: h2.events.Event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            stream.headers = {str(k): str(v) for k, v in event.headers}
            stream.status = int(stream.headers.get(":status", "0"))
        elif isinstance(event, h2.events.DataReceived):
            if stream is not None:
                stream.body += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            del self.streams[event.stream_id]
            headers = {k: v for k, v in stream.headers.items() if not k.startswith(":")}
            if not stream.done.done():
                stream.done.set_result(Response(stream.status, headers, bytes(stream.body)))
            self.wake()
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            del self.streams[event.stream_id]
            if not stream.done.done():
                refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
                stream.done.set_exception(
                    Unprocessed("REFUSED_STREAM")
                    if refused
                    else ConnectionError(f"stream reset: {event.error_code!r}")
                )
            self.wake()
        elif isinstance(event, h2.events.ConnectionTerminated):  # not fed to h2; in case
            self.on_goaway(event.last_stream_id or 0)
        elif isinstance(event, h2.events.RemoteSettingsChanged | h2.events.WindowUpdated):
            self.wake()

    async def request(
        self, path: str, headers: dict[str, str], body: bytes, authority: str
    ) -> Response:
        while len(self.streams) >= self.h2.remote_settings.max_concurrent_streams:
            if not self.usable:
                raise Unprocessed("the connection is closing")
            await self.changed.wait()
        if not self.usable:
            raise Unprocessed("the connection is closing")
        stream_id = self.h2.get_next_available_stream_id()
        stream = _Stream(asyncio.get_running_loop().create_future())
        self.streams[stream_id] = stream
        fields = [(":method", "POST"), (":scheme", "https"), (":path", path),
                  (":authority", authority), *headers.items()]  # fmt: skip
        self.h2.send_headers(stream_id, fields, end_stream=not body)
        self.flush()
        sent = 0
        while sent < len(body):
            if stream.done.done():
                break  # answered or refused before its body was sent
            size = min(
                self.h2.local_flow_control_window(stream_id),
                self.h2.max_outbound_frame_size,
                len(body) - sent,
            )
            if size <= 0:
                await self.changed.wait()
                continue
            self.h2.send_data(
                stream_id, body[sent : sent + size], end_stream=sent + size == len(body)
            )
            sent += size
            self.flush()
        try:
            await self.writer.drain()
        except OSError:
            pass  # the connection died: the reader fails the stream, saying how
        try:
            return await stream.done
        except asyncio.CancelledError:  # no answer in time: give the stream up
            if self.streams.pop(stream_id, None) is not None and self.error is None:
                try:
                    self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                    self.flush()
                except h2.exceptions.ProtocolError:
                    pass
            raise

    def cancel(self, exc: BaseException) -> None:
        self.task.cancel()
        if self.error is None:
            self.fail(exc)


class H2Client:
    """HTTP/2 ``POST`` requests to one ``https`` origin on one connection at a
    time: a new one once the current one received GOAWAY or died. Use inside
    one event loop, then :meth:`close`.

    :param base: ``https://host[:port]``.
    :param context: the TLS context (its ALPN is set to ``h2``).
    :param timeout: seconds to connect, and for each answer.
    :param resends: how many times a request the server certainly did not
        process (:class:`Unprocessed`) is sent again.
    """

    def __init__(self, base: str, context: ssl.SSLContext, timeout: float, resends: int = 3):
        parts = urlsplit(base)
        self.host = parts.hostname or ""
        self.port = parts.port or 443
        self.authority = parts.netloc
        self.context = context
        self.context.set_alpn_protocols(["h2"])
        self.timeout = timeout
        self.resends = resends
        self.connections = 0
        self._current: _Connection | None = None
        self._all: list[_Connection] = []
        self._connecting: asyncio.Lock | None = None

    async def _connection(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._current is not None and self._current.usable:
                return self._current
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host, self.port, ssl=self.context, server_hostname=self.host
                ),
                self.timeout,
            )
            ssl_object: Any = writer.get_extra_info("ssl_object")
            if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                writer.close()
                raise ConnectionError(f"{self.authority} does not speak HTTP/2")
            self._current = _Connection(reader, writer)
            self._all.append(self._current)
            self.connections += 1
            return self._current

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> Response:
        """Send ``POST path``; again (on a new connection) while the server
        certainly did not process it, up to ``resends`` times.

        :raises Unprocessed: when it was not processed after the resends.
        :raises OSError: connection failures (``TimeoutError`` when no answer
            came in time: it may have been processed).
        """
        attempt = 0
        while True:
            attempt += 1
            connection = await self._connection()
            try:
                return await asyncio.wait_for(
                    connection.request(path, headers, body, self.authority), self.timeout
                )
            except Unprocessed:
                if attempt > self.resends:
                    raise

    async def close(self) -> None:
        """Close every connection (the reader tasks end)."""
        for connection in self._all:
            connection.cancel(ConnectionError("the client closed"))
            try:
                await connection.task
            except asyncio.CancelledError:
                pass
            connection.writer.close()
            try:  # the TLS close_notify exchange, briefly
                await asyncio.wait_for(connection.writer.wait_closed(), 2)
            except (OSError, TimeoutError):
                connection.writer.transport.abort()
