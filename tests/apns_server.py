"""A local fake APNs for the tests and the benchmark: HTTP/2 (the ``h2``
library, sans-I/O, on a TLS socket: ALPN ``h2``, a fixture-made certificate)
on 127.0.0.1.

Each request is checked as APNs does: ``POST /3/device/<token>``, an ES256
provider token (``kid``, ``iss``, ``iat`` less than an hour old) signed by the
test key, ``apns-topic``, ``apns-push-type``, ``apns-priority``,
``apns-expiration``, ``apns-collapse-id`` and a JSON payload with ``aps`` of
at most 4 KiB. A request that fails a check is answered as APNs would
(``400``/``403``/``404``/``405``/``413`` with a ``reason``) and listed in
:attr:`FakeAPNs.errors`. Otherwise :attr:`FakeAPNs.answers` scripts the
statuses per device token (``200``, ``400``, ``410``, ``413``, ``429`` with
``Retry-After``, ``5xx``, or a ``(status, reason)`` pair for another of APNs'
reasons), then ``200``. :meth:`FakeAPNs.refuse_streams` resets the next
requests with ``REFUSED_STREAM`` (not processed), as a server that is
shedding load does.

Written on ``h2`` directly (not on an ASGI server) so that the tests control
the connection: many concurrent streams on one connection, a scripted
graceful GOAWAY with a chosen last-stream-id (:meth:`FakeAPNs.goaway`), and a
clean shutdown; one thread per connection, which alone reads and writes it.
"""

from __future__ import annotations

import heapq
import itertools
import json
import socket
import ssl
import threading
import time
import uuid
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame
import jwt

#: The statuses a token can be scripted to get, with APNs' reason.
REASONS = {
    400: "BadDeviceToken",
    403: "Forbidden",
    410: "Unregistered",
    413: "PayloadTooLarge",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}
PUSH_TYPES = ("alert", "background", "voip", "complication", "fileprovider", "mdm")
MAX_PAYLOAD = 4096


class FakeAPNs:
    """The fake service, listening from construction until :meth:`stop`.

    :param ca: the ``trustme.CA`` that issues the server's certificate.
    :param public_key: the public half of the ``.p8`` key.
    :param topic: the app's bundle id (``apns-topic``).
    :param key_id: the key id (the token's ``kid``).
    :param team_id: the team id (the token's ``iss``).
    :param max_streams: ``SETTINGS_MAX_CONCURRENT_STREAMS`` announced.
    :param slow_seconds: how long tokens starting with ``slow`` wait for their answer.
    """

    def __init__(
        self,
        ca: Any,
        public_key: Any,
        *,
        topic: str,
        key_id: str,
        team_id: str,
        max_streams: int = 1000,
        slow_seconds: float = 1.5,
    ) -> None:
        self.public_key = public_key
        self.topic, self.key_id, self.team_id = topic, key_id, team_id
        self.max_streams = max_streams
        self.slow_seconds = slow_seconds
        self.answers: dict[str, list[int | tuple[int, str]]] = {}
        self.retry_after = "1"
        #: ``(token, headers, payload)`` of each notification answered 200.
        self.delivered: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        #: ``(token, status)`` of each request processed, in order.
        self.attempts: list[tuple[str, int]] = []
        #: ``(token, monotonic time)`` of each 200 answer, when it is sent.
        self.finished: list[tuple[str, float]] = []
        #: The checks requests failed (the tests expect none).
        self.errors: list[str] = []
        #: Tokens of the requests left unprocessed by a GOAWAY (above its last-stream-id).
        self.dropped: list[str] = []
        #: ``(connection number, last_stream_id)`` of each GOAWAY sent by :meth:`goaway`.
        self.goaways: list[tuple[int, int]] = []
        #: Tokens of the requests reset with ``REFUSED_STREAM`` (see :meth:`refuse_streams`).
        self.refused: list[str] = []
        self._refuse_streams = 0
        self.connections = 0
        #: The most requests open at once on one connection.
        self.max_in_flight = 0
        self._goaway: tuple[int, int, bool] | None = None
        self._verified: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        cert = ca.issue_cert("127.0.0.1")
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(self._context)
        self._context.set_alpn_protocols(["h2"])
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.base = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        self._acceptor = threading.Thread(target=self._accept, name="fake-apns", daemon=True)
        self._acceptor.start()

    # -- the tests' handles ------------------------------------------------------------

    def attempts_of(self, token: str) -> list[int]:
        """The statuses answered to ``token``, in order."""
        with self._lock:
            return [status for t, status in self.attempts if t == token]

    def goaway(self, after: int, waiting: int, late: bool = False) -> None:
        """On the next connection that has ``after + waiting`` complete requests
        waiting (none answered before that), answer the ``after`` lowest
        streams, send GOAWAY (``NO_ERROR``) with the last of them as
        last-stream-id, and leave the others unprocessed (:attr:`dropped`):
        a graceful shutdown with requests in flight. Then the connection is
        drained and closed once the client closes it. Once.

        :param after: how many requests to answer first.
        :param waiting: how many more must be in flight (above last-stream-id).
        :param late: send the GOAWAY frame first, then the answers of the
            streams at or below its last-stream-id (as RFC 9113 allows).
        """
        self._goaway = (after, waiting, late)

    def refuse_streams(self, count: int) -> None:
        """Reset the next ``count`` complete requests with ``RST_STREAM``
        ``REFUSED_STREAM`` instead of processing them (RFC 9113, 8.7: the
        request was not processed; the connection stays open).

        :param count: how many requests to refuse, across connections.
        """
        with self._lock:
            self._refuse_streams = count

    def stop(self) -> None:
        """Stop accepting, close each connection (with GOAWAY), join the threads."""
        self._stopping.set()
        self._acceptor.join(10)
        self._listener.close()
        for thread in list(self._threads):
            thread.join(10)
        alive = [t.name for t in self._threads if t.is_alive()] + (
            [self._acceptor.name] if self._acceptor.is_alive() else []
        )
        assert not alive, f"the fake APNs did not stop: {alive}"

    # -- serving -------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
            thread = threading.Thread(
                target=_Connection(self, sock, number).run,
                name=f"fake-apns-{number}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def check(self, headers: dict[str, str], body: bytes) -> tuple[int, str | None, str]:
        """``(status, reason, token)`` for a request: an APNs error for a bad
        one (also listed in :attr:`errors`), else ``(0, None, token)``."""
        path = headers.get(":path", "")
        token = path.rsplit("/", 1)[-1]
        if headers.get(":method") != "POST":
            return self._refuse(405, "MethodNotAllowed", token, headers.get(":method"))
        if not path.startswith("/3/device/") or not token:
            return self._refuse(404, "BadPath", token, path)
        auth = headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return self._refuse(403, "MissingProviderToken", token, auth[:20])
        claims = self._claims(auth[7:])
        if claims is None:
            return self._refuse(403, "InvalidProviderToken", token, auth[:40])
        if not time.time() - 3600 < claims["iat"] <= time.time() + 60:
            return self._refuse(403, "ExpiredProviderToken", token, claims["iat"])
        topic = headers.get("apns-topic")
        if topic is None:
            return self._refuse(400, "MissingTopic", token)
        if topic != self.topic:
            return self._refuse(400, "TopicDisallowed", token, topic)
        push_type = headers.get("apns-push-type")
        if push_type not in PUSH_TYPES:
            return self._refuse(400, "InvalidPushType", token, push_type)
        if headers.get("apns-priority", "10") not in ("5", "10"):
            return self._refuse(400, "BadPriority", token, headers["apns-priority"])
        expiration = headers.get("apns-expiration", "0")
        if not expiration.isdigit():
            return self._refuse(400, "BadExpirationDate", token, expiration)
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return self._refuse(400, "BadCollapseId", token, headers["apns-collapse-id"])
        if not body:
            return self._refuse(400, "PayloadEmpty", token)
        if len(body) > MAX_PAYLOAD:
            return self._refuse(413, "PayloadTooLarge", token, len(body))
        try:
            payload = json.loads(body)
            aps = payload["aps"]
            if push_type == "alert":
                assert isinstance(aps["alert"]["title"], str)
                assert isinstance(aps["alert"]["body"], str)
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            return self._refuse(400, "BadPayload", token, repr(exc))
        return 0, None, token

    def _claims(self, token: str) -> dict[str, Any] | None:
        # An ES256 verification costs more than the rest of a request: each
        # distinct token is verified once (the consumer reuses one for 50 min).
        with self._lock:
            claims = self._verified.get(token)
        if claims is not None:
            return claims
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"])
        except jwt.PyJWTError:
            return None
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            return None
        if not isinstance(claims.get("iat"), int):
            return None
        with self._lock:
            self._verified[token] = claims
        return claims

    def _refuse(
        self, status: int, reason: str, token: str, detail: Any = None
    ) -> tuple[int, str, str]:
        with self._lock:
            self.errors.append(f"{status} {reason}: {detail!r}")
        return status, reason, token

    def answer(
        self, token: str, headers: dict[str, str], payload: dict[str, Any]
    ) -> tuple[int, str | None]:
        """Process a good request: the scripted status (then 200), recorded."""
        with self._lock:
            queue = self.answers.get(token) or []
            scripted = queue.pop(0) if queue else 200
            status, reason = (
                scripted
                if isinstance(scripted, tuple)
                else (scripted, REASONS.get(scripted, "InternalServerError"))
            )
            self.attempts.append((token, status))
            if status == 200:
                self.delivered.append((token, headers, payload))
        return status, reason if status != 200 else None


class _Request:
    __slots__ = ("headers", "body", "complete")

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.body = bytearray()
        self.complete = False


class _Connection:
    """One client connection, served by one thread."""

    def __init__(self, fake: FakeAPNs, sock: socket.socket, number: int) -> None:
        self.fake = fake
        self.raw = sock
        self.number = number
        self.requests: dict[int, _Request] = {}
        # the answers to send: (when, order, stream id, status, reason, token)
        self.due: list[tuple[float, int, int, int, str | None, str]] = []
        self.seq = itertools.count()
        self.unsent: dict[int, bytes] = {}  # bodies waiting for flow-control window
        self.draining = False

    def run(self) -> None:
        try:
            self.raw.settimeout(5)
            self.sock = self.fake._context.wrap_socket(self.raw, server_side=True)
        except (OSError, ssl.SSLError):
            self.raw.close()
            return
        try:
            if self.sock.selected_alpn_protocol() != "h2":
                self.fake._refuse(0, "NotHTTP2", "", self.sock.selected_alpn_protocol())
                return
            self.h2 = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
            )
            self.h2.local_settings = h2.settings.Settings(
                client=False,
                initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: (
                    self.fake.max_streams
                )},
            )  # fmt: skip
            self.h2.initiate_connection()
            self.flush()
            self.serve()
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass  # the client went away
        finally:
            self.sock.close()

    def serve(self) -> None:
        drain_until = None
        while True:
            if self.fake._stopping.is_set() and not self.draining:
                self.h2.close_connection()
                self.flush()
                return
            wait = 0.05
            if self.due:
                wait = max(0.0, min(wait, self.due[0][0] - time.monotonic()))
            self.sock.settimeout(wait)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                data = None
            except ssl.SSLWantReadError:
                data = None
            if data == b"":
                return  # the client closed the connection
            if self.draining:
                # After GOAWAY: read (and discard) until the client closes.
                if drain_until is None:
                    drain_until = time.monotonic() + 10
                if time.monotonic() > drain_until or self.fake._stopping.is_set():
                    return
                continue
            if data:
                for event in self.h2.receive_data(data):
                    self.on_event(event)
            self.send_due()
            self.flush()

    def on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = {str(k): str(v) for k, v in event.headers}
            self.requests[event.stream_id] = _Request(headers)
            with self.fake._lock:
                self.fake.max_in_flight = max(self.fake.max_in_flight, len(self.requests))
        elif isinstance(event, h2.events.DataReceived):
            request = self.requests.get(event.stream_id)
            if request is not None:
                request.body += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            request = self.requests.get(event.stream_id)
            if request is not None:
                request.complete = True
                self.on_request(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.requests.pop(event.stream_id, None)
            self.unsent.pop(event.stream_id, None)
        elif isinstance(event, h2.events.WindowUpdated):
            for stream_id, body in list(self.unsent.items()):
                self.send_body(stream_id, body)

    def on_request(self, stream_id: int) -> None:
        with self.fake._lock:
            refuse = self.fake._refuse_streams > 0
            if refuse:
                self.fake._refuse_streams -= 1
                path = self.requests[stream_id].headers.get(":path", "")
                self.fake.refused.append(path.rsplit("/", 1)[-1])
        if refuse:  # not processed: neither checked nor an attempt
            del self.requests[stream_id]
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        goaway = self.fake._goaway
        if goaway is not None:
            after, waiting, late = goaway
            complete = sorted(i for i, r in self.requests.items() if r.complete)
            if len(complete) >= after + waiting:
                self.fake._goaway = None
                self.go_away(after, late)
            return  # held until then
        self.process(stream_id)

    def process(self, stream_id: int) -> None:
        request = self.requests[stream_id]
        body = bytes(request.body)
        status, reason, token = self.fake.check(request.headers, body)
        if status == 0:
            status, reason = self.fake.answer(token, request.headers, json.loads(body))
        wait = self.fake.slow_seconds if token.startswith("slow") else 0.0
        heapq.heappush(
            self.due, (time.monotonic() + wait, next(self.seq), stream_id, status, reason, token)
        )

    def go_away(self, after: int, late: bool) -> None:
        """Answer the ``after`` lowest complete streams (each below any
        incomplete one), and GOAWAY with the last as last-stream-id: after
        those answers, or (``late``) before them."""
        answered: list[int] = []
        for stream_id in sorted(self.requests):
            if not self.requests[stream_id].complete or len(answered) == after:
                break
            answered.append(stream_id)
        last = answered[-1] if answered else 0
        if late:
            # h2 sends nothing once it has sent GOAWAY itself: the frame is
            # written by hand, and h2 then answers the streams up to ``last``.
            frame = hyperframe.frame.GoAwayFrame(0)
            frame.last_stream_id = last
            self.sock.sendall(frame.serialize())
        for stream_id in answered:
            self.process(stream_id)
        self.due = [(0.0, *entry[1:]) for entry in self.due]  # answered now
        heapq.heapify(self.due)
        self.send_due()
        with self.fake._lock:
            self.fake.dropped.extend(
                r.headers.get(":path", "").rsplit("/", 1)[-1]
                for i, r in self.requests.items()
                if i > last
            )
            self.fake.goaways.append((self.number, last))
        if late:
            self.flush()
        else:
            self.h2.close_connection(last_stream_id=last)
            self.flush()
        self.draining = True

    def send_due(self) -> None:
        now = time.monotonic()
        while self.due and self.due[0][0] <= now:
            _, _, stream_id, status, reason, token = heapq.heappop(self.due)
            if self.requests.pop(stream_id, None) is None:
                continue  # reset by the client meanwhile
            if status == 200:
                with self.fake._lock:
                    self.fake.finished.append((token, time.monotonic()))
            headers = [(":status", str(status)), ("apns-id", str(uuid.uuid4()).upper())]
            if status == 429:
                headers.append(("retry-after", self.fake.retry_after))
            if reason is None:
                self.h2.send_headers(stream_id, headers, end_stream=True)
                continue
            body = json.dumps({"reason": reason}).encode()
            headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
            self.h2.send_headers(stream_id, headers)
            self.send_body(stream_id, body)

    def send_body(self, stream_id: int, body: bytes) -> None:
        try:
            if self.h2.local_flow_control_window(stream_id) < len(body):
                self.unsent[stream_id] = body  # sent on the next WINDOW_UPDATE
                return
            self.h2.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.StreamClosedError:
            pass
        self.unsent.pop(stream_id, None)

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.settimeout(5)
            self.sock.sendall(data)
