"""The physical limit for ``benchmarks/fanout.py``: a bare loop of sends.

``python benchmarks/fanout_bare.py PORT REDIS_URL CHANNEL [PROCESSES]``

One process, one thread, no framework: it accepts the load client's
connections, answers each with the same response head as a stream, and for
each message on the Redis channel (what ``RedisPubSub.publish`` sends: ``<id>
<event JSON>``) builds the same SSE frame as Flask-Notifications, as one
HTTP/1.1 chunk, and writes it to every connection with one non-blocking
``send`` each::

    for sock in socks:
        sock.send(wire)

The CPU time of that loop alone (``time.process_time`` around it), divided
by the deliveries, is the reference cost of a delivery on this machine: the
system call and a Python loop step, nothing else. What the kernel does not
take (a full buffer) waits and is written when the socket is writable, so
the load client counts no loss. ``GET /stats`` answers the figures as JSON;
``GET /health`` answers 200.

With ``PROCESSES`` above 1 (the reference for several gunicorn workers), it
forks that many such processes, each listening on the port with
``SO_REUSEPORT`` (the kernel spreads the connections evenly), and ``/stats``
answers for the process that takes the request only.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time

import redis

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n"
)
PREAMBLE = b"retry: 2000\n:ok\n\nevent: ready\ndata: {}\n\n"


def chunk(data: bytes) -> bytes:
    return b"%X\r\n%s\r\n" % (len(data), data)


class Bare:
    def __init__(self, port: int, redis_url: str, channel: str, reuse_port: bool) -> None:
        self.selector = selectors.DefaultSelector()
        self.listener = socket.create_server(
            ("127.0.0.1", port), backlog=4096, reuse_port=reuse_port
        )
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.heads: dict[socket.socket, bytes] = {}  # connections still sending their request
        self.socks: list[socket.socket] = []  # open streams
        self.pending: dict[socket.socket, bytearray] = {}  # what the kernel did not take
        self.pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(channel)
        # redis-py has no public accessor for the subscription's socket.
        redis_sock = self.pubsub.connection._sock  # type: ignore[union-attr]
        self.selector.register(redis_sock, selectors.EVENT_READ, "redis")
        self.loop_cpu = 0.0
        self.deliveries = 0
        self.partial = 0

    def serve(self) -> None:
        while True:
            for key, events in self.selector.select(timeout=1.0):
                what = key.data
                if what == "accept":
                    self.accept()
                elif what == "redis":
                    while (message := self.pubsub.get_message(timeout=0)) is not None:
                        self.fan_out(message["data"])
                elif what == "head":
                    self.read_head(key.fileobj)  # type: ignore[arg-type]
                elif events & selectors.EVENT_WRITE:
                    self.drain(key.fileobj)  # type: ignore[arg-type]

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            # As the streams' sockets (gunicorn's listener sets it): a frame
            # goes out at once, never held back for the previous one's ACK.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.heads[conn] = b""
            self.selector.register(conn, selectors.EVENT_READ, "head")

    def read_head(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        head = self.heads[conn] + data
        if not data or b"\r\n\r\n" not in head:
            if not data:
                self.selector.unregister(conn)
                del self.heads[conn]
                conn.close()
            else:
                self.heads[conn] = head
            return
        self.selector.unregister(conn)
        del self.heads[conn]
        path = head.split(b" ", 2)[1]
        if path in (b"/health", b"/stats"):
            body = json.dumps(self.stats()).encode()
            conn.setblocking(True)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            conn.close()
            return
        conn.setblocking(True)
        conn.sendall(HEAD + chunk(PREAMBLE))
        conn.setblocking(False)
        self.socks.append(conn)

    def fan_out(self, data: bytes) -> None:
        event_id, _, event = data.partition(b" ")
        wire = chunk(b"id: %s\nevent: bench\ndata: %s\n\n" % (event_id, event))
        pending = self.pending
        started = time.process_time()
        for sock in self.socks:  # the bare loop
            if sock in pending:
                pending[sock] += wire
                continue
            try:
                sent = sock.send(wire)
            except BlockingIOError:
                sent = 0
            if sent != len(wire):
                pending[sock] = bytearray(wire[sent:])
                self.selector.register(sock, selectors.EVENT_WRITE, "write")
                self.partial += 1
        self.loop_cpu += time.process_time() - started
        self.deliveries += len(self.socks)

    def drain(self, sock: socket.socket) -> None:
        buffer = self.pending[sock]
        try:
            sent = sock.send(buffer)
        except BlockingIOError:
            return
        del buffer[:sent]
        if not buffer:
            del self.pending[sock]
            self.selector.unregister(sock)

    def stats(self) -> dict[str, float | int]:
        return {
            "streams": len(self.socks),
            "deliveries": self.deliveries,
            "loop_cpu_s": self.loop_cpu,
            "loop_us_per_delivery": self.loop_cpu / self.deliveries * 1e6
            if self.deliveries
            else None,
            "partial_sends": self.partial,
        }


def main() -> None:
    port, redis_url, channel = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    processes = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    if processes == 1:
        Bare(port, redis_url, channel, reuse_port=False).serve()
        return
    children = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            Bare(port, redis_url, channel, reuse_port=True).serve()
            os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for child in children:
            os.kill(child, signal.SIGTERM)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    for child in children:
        os.waitpid(child, 0)


if __name__ == "__main__":
    main()
