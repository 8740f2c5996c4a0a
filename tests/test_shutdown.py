"""Open streams end when their server shuts down, so it exits promptly.

gunicorn waits up to ``graceful_timeout`` (30 s) for open requests after
``SIGTERM``; without the streams ending, one open stream made it take ~29 s.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from flask_notifications.stream import _shutdown

from .conftest import wait_for
from .sse_client import SSEClient

#: Seconds within which a stream must end and its server exit after SIGTERM.
#: Measured: ~1.1 s under gunicorn (its worker checks every second whether to
#: stop), ~0.1 s under examples/serve.py; ~29 s under gunicorn without the fix.
BOUND = 10.0


def _open(base: str, label: str = "Inbox") -> SSEClient:
    client = SSEClient(f"{base}/notifications/stream/{label}", {"X-User": "alice"}, timeout=BOUND)
    assert client.status == 200
    client.wait_ready()
    return client


def _sigterm_with_open_streams(base: str, proc: subprocess.Popen[bytes]) -> float:
    """Open streams, send SIGTERM to the server, check that every stream ends
    as a complete response and that the server exits; return its exit time."""
    clients = [_open(base, "Inbox"), _open(base, "News")]
    try:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for client in clients:
            assert client.next_event(timeout=BOUND) is None  # the stream ended...
            assert client.complete  # ...with the end of its response: not a cut connection
    finally:
        for client in clients:
            client.close()
    proc.wait(BOUND - (time.monotonic() - started))
    exited = time.monotonic() - started
    assert proc.returncode == 0
    assert exited < BOUND
    return exited


def test_gunicorn_exits_promptly_on_sigterm_with_open_streams(stream_process):
    # gunicorn's default graceful timeout (30 s) is what the streams must beat.
    base, proc = stream_process("gunicorn")
    _sigterm_with_open_streams(base, proc)


def test_serve_py_exits_promptly_on_sigterm_with_open_streams(stream_process):
    base, proc = stream_process("serve")
    _sigterm_with_open_streams(base, proc)


def test_serve_py_closes_idle_connections_on_sigterm(stream_process):
    """A kept-alive connection waiting for its next request does not hold the
    server up."""
    base, proc = stream_process("serve")
    idle = SSEClient(base + "/health", timeout=BOUND)  # HTTP/1.1: the connection stays open
    try:
        assert idle.status == 200
        idle.read_body(timeout=1)
        stream = _open(base)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert stream.next_event(timeout=BOUND) is None and stream.complete
        stream.close()
        proc.wait(BOUND)
        assert time.monotonic() - started < BOUND and proc.returncode == 0
        assert idle.sock.recv(1) == b""  # closed by the server
    finally:
        idle.close()


def test_a_stream_opened_after_stop_ends_at_once(make_app):
    """A request that reaches a stopping process (a client reconnecting over a
    kept-alive connection) gets a stream that ends at once, not one that
    holds the server up."""
    import threading

    from flask import request

    from flask_notifications import Notifications

    app = make_app()
    notifications = Notifications(app)
    notifications.create_hub("Inbox")
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    with app.app_context():
        notifications.dispatcher.stop()
        body: list[bytes] = []
        response = app.test_client().get("/notifications/stream/Inbox", headers={"X-User": "a"})
        reader = threading.Thread(target=lambda: body.append(response.get_data()), daemon=True)
        reader.start()
        reader.join(BOUND)
        assert not reader.is_alive(), "the stream did not end"
        assert response.status_code == 200 and b"event: ready" in body[0]
        assert notifications.dispatcher.stream_count == 0
        notifications.shutdown()


class _FakeDispatcher:
    def __init__(self) -> None:
        import os

        self.pid = os.getpid()
        self.stopped = 0

    def stop(self) -> None:
        self.stopped += 1


@pytest.fixture
def usr_signals():
    """SIGUSR1 and SIGUSR2 with their handlers restored afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}
    yield signal.SIGUSR1, signal.SIGUSR2
    for signum, handler in saved.items():
        signal.signal(signum, handler)
        _shutdown._previous.pop(signum, None)


def test_the_handler_is_chained_once_and_keeps_the_previous_one(usr_signals):
    import os

    chained, ignored = usr_signals
    calls = []
    signal.signal(chained, lambda signum, frame: calls.append(signum))
    signal.signal(ignored, signal.SIG_IGN)
    first, second = _FakeDispatcher(), _FakeDispatcher()
    _shutdown.watch(first, usr_signals)
    _shutdown.watch(second, usr_signals)  # a second app: not chained twice
    assert signal.getsignal(chained) is _shutdown._on_signal
    assert signal.getsignal(ignored) == signal.SIG_IGN  # ignored stays ignored

    os.kill(os.getpid(), chained)
    wait_for(lambda: first.stopped and second.stopped)
    assert calls == [chained]  # the previous handler ran, once
    os.kill(os.getpid(), ignored)  # still ignored: nothing happens


def test_no_handler_outside_the_main_thread(usr_signals):
    import threading

    chained, _ = usr_signals
    signal.signal(chained, previous := lambda signum, frame: None)
    thread = threading.Thread(target=_shutdown.watch, args=(_FakeDispatcher(), usr_signals))
    thread.start()
    thread.join()
    assert signal.getsignal(chained) is previous
