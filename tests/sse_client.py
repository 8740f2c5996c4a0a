"""A small Server-Sent Events client over a raw socket, for the streaming tests."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit


class SSEClient:
    """Opens ``GET url`` and parses the event stream (chunked or not).

    :param url: the stream's URL.
    :param headers: extra request headers.
    :param rcvbuf: a receive buffer size, to make a client stall sooner.
    :param version: the HTTP version of the request (``"1.0"``: no chunked response).
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        rcvbuf: int | None = None,
        version: str = "1.1",
    ):
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((parts.hostname, parts.port))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {path} HTTP/{version}",
            f"Host: {parts.hostname}:{parts.port}",
            "Accept: text/event-stream",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._raw = b""
        self._body = b""
        self._chunked = False
        self.eof = False
        #: The body ended as HTTP says (a chunked body's last chunk), not by a cut connection.
        self.complete = False
        head = self._read_until(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {
            k.strip().lower(): v.strip()
            for k, v in (h.split(":", 1) for h in header_lines if ":" in h)
        }
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self.last_event_id: str | None = None
        #: The "ready" event that opens a stream (next_event skips it).
        self.ready: dict[str, str | None] | None = None
        self.comments: list[str] = []
        self.retry: int | None = None

    def _recv(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        if not data:
            self.eof = True
            return False
        self._raw += data
        return True

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._raw:
            if not self._recv():
                raise TimeoutError("no response head")
        head, _, self._raw = self._raw.partition(marker)
        return head

    def _decode(self) -> None:
        if not self._chunked:
            self._body += self._raw
            self._raw = b""
            return
        while True:
            line_end = self._raw.find(b"\r\n")
            if line_end < 0:
                return
            size = int(self._raw[:line_end].split(b";")[0], 16)
            if size == 0:
                self.eof = self.complete = True
                self._raw = b""
                return
            if len(self._raw) < line_end + 2 + size + 2:
                return
            start = line_end + 2
            self._body += self._raw[start : start + size]
            self._raw = self._raw[start + size + 2 :]

    def read_body(self, timeout: float = 5.0) -> bytes:
        """Read a non-streaming body until the server closes or ``timeout``."""
        deadline = time.monotonic() + timeout
        length = int(self.headers.get("content-length", -1))
        self._decode()
        while not self.eof and len(self._body) != length and time.monotonic() < deadline:
            self._recv()
            self._decode()
        return self._body

    def next_event(self, timeout: float = 5.0) -> dict[str, str] | None:
        """Return the next dispatched event ``{"id", "event", "data"}``; ``None``
        when the server ended the stream. Comments are collected in :attr:`comments`."""
        deadline = time.monotonic() + timeout
        while True:
            self._decode()
            block_end = self._body.find(b"\n\n")
            if block_end >= 0:
                block, self._body = self._body[:block_end], self._body[block_end + 2 :]
                event = self._parse(block.decode("utf-8"))
                if event is not None and event["event"] == "ready" and self.ready is None:
                    self.ready = event
                    continue
                if event is not None:
                    return event
                continue
            if self.eof:
                return None
            if time.monotonic() > deadline:
                raise TimeoutError("no event in time")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            self._recv()

    def wait_ready(self, timeout: float = 5.0) -> dict[str, str | None]:
        """Read until the ``ready`` event that opens a stream arrived; return it."""
        deadline = time.monotonic() + timeout
        while self.ready is None:
            self._decode()
            block_end = self._body.find(b"\n\n")
            if block_end >= 0:
                block, self._body = self._body[:block_end], self._body[block_end + 2 :]
                event = self._parse(block.decode("utf-8"))
                if event is not None and event["event"] != "ready":
                    raise AssertionError(f"the stream did not open with ready: {event}")
                self.ready = event
                continue
            if self.eof:
                raise AssertionError("the stream ended before its ready event")
            if time.monotonic() > deadline:
                raise TimeoutError("no ready event in time")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            self._recv()
        return self.ready

    def _parse(self, block: str) -> dict[str, str] | None:
        data: list[str] = []
        event_type = "message"
        has_id = False
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments.append(line[1:])
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                event_type = value
            elif name == "id":
                self.last_event_id, has_id = value, True
            elif name == "retry":
                self.retry = int(value)
        if not data:
            return None  # per the spec: no event, but the id (if any) is kept
        return {
            "id": self.last_event_id if has_id else None,
            "event": event_type,
            "data": "\n".join(data),
        }

    def events(self, count: int, timeout: float = 5.0) -> list[dict[str, str]]:
        out = []
        for _ in range(count):
            event = self.next_event(timeout)
            if event is None:
                break
            out.append(event)
        return out

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SSEClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
