"""Load client of tests/test_deploy_nginx.py: thousands of SSE streams in one gevent process.

``python tests/deploy_load.py PORT`` connects to ``127.0.0.1:PORT`` (nginx).
It reads commands from stdin, one JSON object a line, and answers each with
one JSON line on stdout:

- ``{"cmd": "open", "streams": [{"key", "path", "source", "user", "headers"}]}``:
  sign ``user`` in (``GET /login/<user>``, once per user; its session cookie
  goes with the stream) unless it is ``null`` (anonymous), then open each
  stream from the local address ``source`` and wait for its ``ready`` event.
  Answers ``{"opened": n, "errors": {key: "429 ..."}, "seconds": s}``.
- ``{"cmd": "wait", "counts": {key: n}, "timeout": s}``: wait until each
  stream has received ``n`` events (``ready`` and heartbeats not counted).
  Answers ``{"complete": bool, "events": {key: [[type, seq], ...]}}``, ``seq``
  being the event's ``seq`` field.
- ``{"cmd": "close", "keys": [...]}``: close those connections.
- ``{"cmd": "resume", "keys": [...]}``: open those streams again with
  ``Last-Event-ID`` set to the id of the last frame each received, and wait
  for the response headers; their event lists start empty. Answers like ``open``.
- ``{"cmd": "quit"}``.

The file-descriptor limit is raised to the hard limit.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.lock import BoundedSemaphore  # noqa: E402

PORT = int(sys.argv[1])
CONNECTING = BoundedSemaphore(400)  # connections being set up at once
cookies: dict[str, str] = {}


def request(source: str, path: str, headers: dict[str, str]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(30)
    sock.connect(("127.0.0.1", PORT))
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{PORT}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    return sock


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before the response head: {data[:200]!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return int(status_line.split()[1]), headers, rest


def login(user: str, source: str) -> str:
    if user not in cookies:
        sock = request(source, f"/login/{user}", {"Connection": "close"})
        try:
            status, headers, _ = read_head(sock)
        finally:
            sock.close()
        if status != 200 or "set-cookie" not in headers:
            raise ConnectionError(f"login answered {status}")
        cookies[user] = headers["set-cookie"].split(";", 1)[0]
    return cookies[user]


class Stream:
    def __init__(self, spec: dict) -> None:
        self.key: str = spec["key"]
        self.path: str = spec["path"]
        self.source: str = spec.get("source") or "127.0.0.1"
        self.user: str | None = spec.get("user")
        self.headers: dict[str, str] = dict(spec.get("headers") or {})
        self.sock: socket.socket | None = None
        self.events: list[list] = []
        self.last_id: str | None = None
        self.error: str | None = None
        self.opened = Event()
        self.target: int | None = None

    def run(self, resume: bool) -> None:
        headers = {"Accept": "text/event-stream", **self.headers}
        if resume:
            headers["Last-Event-ID"] = self.last_id or ""
        buffer = b""
        with CONNECTING:
            try:
                if self.user is not None:
                    headers["Cookie"] = login(self.user, self.source)
                self.sock = sock = request(self.source, self.path, headers)
                status, head, buffer = read_head(sock)
                if status != 200:
                    self.error = f"{status} {buffer[:200].decode(errors='replace')}"
                elif head.get("transfer-encoding") != "chunked":
                    self.error = f"not chunked: {head}"
            except OSError as exc:
                self.error = f"{type(exc).__name__}: {exc}"
            if self.error is not None:
                self.opened.set()
                self.close()
                return
            if resume:  # no ready event after Last-Event-ID: the head is enough
                self.opened.set()
            else:  # wait for the ready event before letting the next stream connect
                buffer = self.read(buffer, until_ready=True)
        if buffer is not None:
            sock.settimeout(None)
            self.read(buffer, until_ready=False)

    def read(self, raw: bytes, until_ready: bool) -> bytes | None:
        """Decode the chunked body and its SSE frames; return what is left
        undecoded once the ready event arrived (``until_ready``)."""
        body = b""
        while True:
            while True:  # whole chunks out of raw
                line_end = raw.find(b"\r\n")
                if line_end < 0:
                    break
                size = int(raw[:line_end].split(b";")[0], 16)
                if size == 0:
                    self.fail("the stream ended")
                    return None
                if len(raw) < line_end + 2 + size + 2:
                    break
                body += raw[line_end + 2 : line_end + 2 + size]
                raw = raw[line_end + 2 + size + 2 :]
            while b"\n\n" in body:
                block, body = body.split(b"\n\n", 1)
                self.frame(block.decode("utf-8"))
                if until_ready and self.opened.is_set():
                    return self.rechunk(body) + raw
            try:
                chunk = self.sock.recv(65536) if self.sock is not None else b""
            except OSError as exc:
                chunk = b""
                if self.sock is not None:
                    self.fail(f"{type(exc).__name__}: {exc}")
            if not chunk:
                if self.sock is not None:
                    self.fail("connection closed")
                return None
            raw += chunk

    @staticmethod
    def rechunk(body: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(body), body) if body else b""

    def fail(self, why: str) -> None:
        if self.error is None:
            self.error = why
        self.opened.set()

    def frame(self, block: str) -> None:
        event_id = event_type = None
        data = []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event_id = value
            elif field == "event":
                event_type = value
            elif field == "data":
                data.append(value)
        if event_id is not None:
            self.last_id = event_id
        if event_type == "ready":
            self.opened.set()
            return
        if not data:  # heartbeats, retry:
            return
        payload = json.loads("\n".join(data))
        self.events.append([event_type or "message", payload.get("seq")])
        if self.target is not None and len(self.events) == self.target:
            reached()

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


streams: dict[str, Stream] = {}
waiting = {"left": 0, "done": Event()}


def reached() -> None:
    waiting["left"] -= 1
    if waiting["left"] == 0:
        waiting["done"].set()


def start(batch: list[Stream], resume: bool) -> dict:
    began = time.monotonic()
    for stream in batch:
        stream.error = None
        stream.opened.clear()
        gevent.spawn(stream.run, resume)
    for stream in batch:
        stream.opened.wait(60)
    errors = {s.key: s.error or "no answer" for s in batch if s.error or not s.opened.is_set()}
    return {
        "opened": len(batch) - len(errors),
        "errors": errors,
        "seconds": time.monotonic() - began,
    }


def handle(command: dict) -> dict | None:
    cmd = command["cmd"]
    if cmd == "open":
        batch = [Stream(spec) for spec in command["streams"]]
        streams.update((s.key, s) for s in batch)
        return start(batch, resume=False)
    if cmd == "resume":
        batch = [streams[key] for key in command["keys"]]
        for stream in batch:
            stream.events = []
        return start(batch, resume=True)
    if cmd == "close":
        for key in command["keys"]:
            streams[key].close()
        return {"closed": len(command["keys"])}
    if cmd == "wait":
        counts = command["counts"]
        waiting["done"] = Event()
        waiting["left"] = 0
        for key, count in counts.items():
            stream = streams[key]
            stream.target = count
            if len(stream.events) < count:
                waiting["left"] += 1
        if waiting["left"]:
            waiting["done"].wait(command.get("timeout", 30))
        for key in counts:
            streams[key].target = None
        return {
            "complete": all(len(streams[k].events) >= n for k, n in counts.items()),
            "events": {k: streams[k].events for k in counts},
            "errors": {k: s.error for k, s in streams.items() if s.error},
        }
    if cmd == "quit":
        return None
    raise ValueError(f"unknown command {cmd!r}")


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stdin = gevent.get_hub().threadpool  # read stdin without blocking the streams
    while True:
        line = stdin.apply(sys.stdin.readline)
        if not line:
            break
        answer = handle(json.loads(line))
        if answer is None:
            break
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    for stream in streams.values():
        stream.close()


if __name__ == "__main__":
    main()
