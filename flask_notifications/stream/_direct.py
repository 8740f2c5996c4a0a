"""Direct writes: the dispatcher writes frames to a stream's socket itself.

Through the WSGI iterator, each frame for each stream costs a greenlet wake-up
(the stream's greenlet resumes, yields, the server writes, it parks again)
and the server's chunked framing. With 5,000 streams and 20 events a second,
that is 100,000 greenlet switches a second, most of one core. So, once a
stream has written its head and its replay through the server, and when the
server is one whose connection we can reach, the dispatcher writes each frame
to the socket with one non-blocking ``send``, from its own greenlet: no
wake-up. Only when the kernel's send buffer is full does the rest go to the
stream's backlog, which the stream's own greenlet writes as the client reads.

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
from collections.abc import Callable
from typing import Any

try:  # gevent is a dependency; without its patching nothing here is used
    from gevent import monkey
except ImportError:  # pragma: no cover
    monkey = None


def chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk (what the server would have written).

    :param data: one or more frames.
    """
    return b"%X\r\n%s\r\n" % (len(data), data)


class Connection:
    """A stream's socket, for direct writes.

    :param sock: the server's gevent socket (blocking cooperatively).
    :param chunked: whether the response is chunked (HTTP/1.1).
    """

    __slots__ = ("raw", "send", "sendall", "chunked")

    def __init__(self, sock: Any, chunked: bool) -> None:
        #: The non-blocking OS socket under gevent's socket: ``send`` on it is
        #: one system call that raises ``BlockingIOError`` when the kernel's
        #: buffer is full (gevent's own ``send`` would wait instead).
        self.raw: _socket.socket = sock._sock
        self.send: Callable[[bytes], int] = self.raw.send
        #: gevent's ``sendall``: blocks this greenlet only, until all is sent.
        self.sendall: Callable[[bytes], None] = sock.sendall
        self.chunked = chunked

    def abort(self) -> None:
        """End the connection for writing: a write blocked on it fails at once
        (the client gets what the kernel holds already, then the end)."""
        try:
            self.raw.shutdown(_socket.SHUT_WR)
        except OSError:  # closed already
            pass


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


def connection(sink: Sink, head_length: int) -> Connection | None:
    """The connection of the response that ``sink`` belongs to, once the
    server has written the headers and the first ``head_length`` body bytes,
    when the server is a known one (see the module's documentation); else
    ``None``.

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
    return Connection(sock, bool(chunked))


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


__all__ = ["Connection", "Sink", "chunk", "connection", "enabled"]
