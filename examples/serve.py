"""Serve a WSGI app with gevent: ``python examples/serve.py module:app PORT``.

Monkey-patching comes first so Redis and socket calls yield to other requests.

``SIGTERM`` (and ``Ctrl-C``) stop the server gracefully: it stops accepting,
Flask-Notifications ends the open streams (their clients reconnect elsewhere
and replay what they missed), connections waiting for their next request are
closed, and the server exits once the requests under way are done (those
still running after ``STOP_TIMEOUT`` seconds are cut).
"""

from gevent import monkey

monkey.patch_all()

import contextlib  # noqa: E402
import importlib  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from typing import ClassVar  # noqa: E402

import gevent  # noqa: E402
from gevent.pool import Pool  # noqa: E402
from gevent.pywsgi import WSGIHandler, WSGIServer  # noqa: E402

STOP_TIMEOUT = 10.0


class Handler(WSGIHandler):
    """Ends kept-alive connections when the server stops, rather than waiting
    for a next request."""

    waiting: ClassVar[set["Handler"]] = set()  # handlers waiting for a request

    def read_requestline(self) -> str | None:  # type: ignore[override]
        if self.server.closed:
            return None  # no next request: the connection closes
        self.waiting.add(self)
        try:
            return super().read_requestline()
        finally:
            self.waiting.discard(self)


def stop(server: WSGIServer) -> None:
    """Stop accepting, and close the connections waiting for a request;
    ``serve_forever`` then waits for the requests under way."""
    server.close()
    for handler in list(Handler.waiting):
        with contextlib.suppress(OSError):
            handler.socket.shutdown(socket.SHUT_RDWR)  # their read ends: no request


def main() -> None:
    target, port = sys.argv[1], int(sys.argv[2])
    module_name, _, attr = target.partition(":")
    # A pool, so that stopping waits for the requests under way.
    server = WSGIServer(("127.0.0.1", port), spawn=Pool(), handler_class=Handler, log=None)
    for signum in (signal.SIGTERM, signal.SIGINT):
        # Flask-Notifications chains its handler in front of this one when its
        # first stream starts. Stopping runs in a greenlet of its own: a signal
        # handler may run in gevent's hub, which must never block.
        signal.signal(signum, lambda signum, frame: gevent.spawn(stop, server))
    sys.path.insert(0, ".")
    server.application = getattr(importlib.import_module(module_name), attr or "app")
    server.serve_forever(stop_timeout=STOP_TIMEOUT)


if __name__ == "__main__":
    main()
