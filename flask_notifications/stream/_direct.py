"""Direct writes: the dispatcher writes frames to a stream's socket itself.

Through the WSGI iterator, each frame for each stream costs a greenlet wake-up
(the stream's greenlet resumes, yields, the server writes, it parks again)
and the server's chunked framing. With 5,000 streams and 20 events a second,
that is 100,000 greenlet switches a second, most of one core. So, once a
stream has written its head and its replay through the server, and when the
server is one whose connection we can reach, the dispatcher writes each frame
to the socket with one non-blocking ``send``, from its own greenlet: no
wake-up. Only when the kernel's send buffer is full does the rest go to the
stream's backlog, which a greenlet started for it writes as the client reads.
Meanwhile the stream's own greenlet stays parked in the server's loop over
the response (:func:`park`) until the stream ends.

This is our own code instead of the server's because WSGI has no API for it:
the server's ``write`` callable blocks until everything is sent, which would
let one slow client hold up every other stream. It is safe only where we
know exactly what the server does with the connection:

- the servers: ``gunicorn -k gevent`` (its ``Response``, reached through the
  ``write`` callable its ``start_response`` returns; ``environ
  ["gunicorn.socket"]`` is the same socket) and ``gevent.pywsgi`` (its
  ``WSGIHandler``, reached the same way);
- under gevent's monkey patching, so the dispatcher and every stream run in
  one thread and switch only where they block: no frame can be half-written
  by one while another writes;
- a plain TCP socket (not TLS: we would write clear text into it);
- the server has sent the headers and our head unchanged (no middleware
  compressed or buffered the body);
- the server's framing known: HTTP/1.1 chunked, which we write ourselves (a
  frame is one chunk, framed once per event for every stream), or none for
  an HTTP/1.0 client, whose response ends when the connection closes.

Everywhere else (werkzeug's development server, the test client, threads,
TLS, a middleware) frames go through the WSGI iterator as before.
"""

from __future__ import annotations

import _socket
from collections.abc import Callable, Iterator
from typing import Any

try:  # gevent is a dependency; without its patching nothing here is used
    from gevent import monkey
    from gevent import spawn as gevent_spawn
    from gevent.hub import Waiter, get_hub
except ImportError:  # pragma: no cover
    monkey = None


def chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk (what the server would have written).

    :param data: one or more frames.
    """
    return b"%X\r\n%s\r\n" % (len(data), data)


#: What a parked stream's greenlet is resumed with when its stream ends.
END = object()


def abort(sock: Any) -> None:
    """End a connection for writing: a write blocked on it fails at once (the
    client gets what the kernel holds already, then the end).

    :param sock: a gevent socket.
    """
    try:
        sock.shutdown(_socket.SHUT_WR)
    except OSError:  # closed already
        pass


def park() -> tuple[Any, Iterator[bytes]]:
    """Park the current greenlet (the stream's, in the server's loop over the
    response) until :func:`resume` ends it.

    :returns: what :func:`resume` takes, and the iterator that parks: built
        from C parts (``iter(waiter.get, END)``, under ``itertools.chain`` in
        the response), so that the parked greenlet keeps no Python frame of
        ours and a shallow C stack, about 1 KB less per idle stream than
        waiting on an event inside a generator. A ``Waiter`` resumes only a
        greenlet that still waits in it (never one that went on after an
        exception).
    """
    waiter = Waiter()
    return waiter, iter(waiter.get, END)


def resume(waiter: Any) -> None:
    """Let the greenlet parked by :func:`park` go on (from the hub, soon):
    its response ends.

    :param waiter: what :func:`park` returned with it.
    """
    get_hub().loop.run_callback(waiter.switch, END)


def spawn(function: Callable[[], None]) -> None:
    """Run ``function`` in a greenlet of its own (a stream's backlog writer).

    :param function: what to run.
    """
    gevent_spawn(function)


class Sink:
    """Catches the ``write`` callable that the server's ``start_response``
    returns: through it, the server's connection (see :func:`connection`)."""

    __slots__ = ("write",)

    def __init__(self) -> None:
        self.write: Callable[[bytes], Any] | None = None

    def start_response(self, start_response: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap the server's ``start_response`` to keep what it returns.

        :param start_response: the server's.
        """

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            write = start_response(status, headers, exc_info)
            self.write = write
            return write

        return capture


def enabled() -> bool:
    """Whether direct writes may be used in this process: gevent patched both
    threads and sockets (the dispatcher is a greenlet of the streams' thread)."""
    return (
        monkey is not None
        and monkey.is_module_patched("threading")
        and monkey.is_module_patched("socket")
    )


def connection(sink: Sink, head_length: int) -> tuple[Any, Callable[[bytes], int], bool] | None:
    """The connection of the response that ``sink`` belongs to, once the
    server has written the headers and the first ``head_length`` body bytes,
    when the server is a known one (see the module's documentation); else
    ``None``.

    :returns: the server's gevent socket (blocking cooperatively); the
        ``send`` of the non-blocking OS socket under it, one system call that
        raises ``BlockingIOError`` when the kernel's buffer is full (gevent's
        own ``send`` would wait instead); whether the response is chunked.

    :param sink: the response's sink.
    :param head_length: how many body bytes the stream has yielded so far.
    """
    owner = getattr(sink.write, "__self__", None)
    if owner is None:
        return None
    kind = type(owner)
    if kind.__module__ == "gunicorn.http.wsgi" and kind.__name__ == "Response":
        if not owner.headers_sent or owner.sent != head_length or owner.upgrade:
            return None  # something buffered or changed the body
        if getattr(owner.cfg, "protocol", "http") != "http":
            return None
        sock, chunked, headers = owner.sock, owner.chunked, owner.headers
    elif _is_pywsgi_handler(owner):
        if not owner.headers_sent or owner.code != 200:
            return None
        sock, chunked = owner.socket, owner.response_use_chunked
        headers = [(_text(k), _text(v)) for k, v in owner.response_headers]
    else:
        return None
    if any(name.lower() == "content-encoding" for name, _ in headers):
        return None  # compressed: our frames would have to be too
    if not _plain_gevent_socket(sock):
        return None
    # Each frame goes out at once (gunicorn's accepted sockets have this from
    # its listener; gevent.pywsgi's do not): no frame waits for the previous
    # one's acknowledgement.
    sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    return sock, sock._sock.send, bool(chunked)


def _is_pywsgi_handler(owner: Any) -> bool:
    try:
        from gevent.pywsgi import WSGIHandler
    except ImportError:  # pragma: no cover
        return False
    return isinstance(owner, WSGIHandler)


def _plain_gevent_socket(sock: Any) -> bool:
    """A gevent TCP socket, not TLS (its subclasses, SSLSocket among them, are
    refused), over a non-blocking OS socket."""
    try:
        from gevent import socket as gsocket
    except ImportError:  # pragma: no cover
        return False
    if type(sock) is not gsocket.socket:
        return False
    raw = getattr(sock, "_sock", None)
    return isinstance(raw, _socket.socket) and raw.gettimeout() == 0.0


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


__all__ = ["END", "Sink", "abort", "chunk", "connection", "enabled", "park", "resume", "spawn"]
