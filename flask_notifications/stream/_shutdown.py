"""Open streams end when their process is asked to stop.

A Server-Sent Events stream never ends by itself, and servers that stop
gracefully wait for open requests: ``gunicorn -k gevent`` waits up to its
``graceful_timeout`` (30 s) after ``SIGTERM``. So, when a
:class:`~flask_notifications.stream.dispatcher.Dispatcher` starts in a
process's main thread (under gevent, every greenlet runs there), it chains a
handler in front of the ones installed for ``SIGTERM``, ``SIGINT`` and
``SIGQUIT``. The handler stops every dispatcher of the process, which ends
every stream: each response finishes as a complete HTTP response, the server
sees its requests done and exits at once, and clients reconnect (to another
process) and replay what they missed by ``Last-Event-ID``. Then the handler
calls the handler it replaced (gunicorn's, Python's ``KeyboardInterrupt``, the
server's own), so the server's own shutdown runs as before.

Only Python handlers are chained. A signal left to its default action
(``SIG_DFL``: the process dies at once, and so do its streams) or ignored
(``SIG_IGN``) is left alone, and so is every signal when the dispatcher does
not start in the main thread (Python only lets the main thread install
handlers). Installing is done once per process: a forked child chains again
in front of whatever it installed itself (gunicorn resets its workers'
handlers), and a handler already chained is never chained twice.

The handler itself does nothing that may block or take a lock: a signal
handler runs between two instructions of whatever code was running (under
gevent, possibly in the hub, which must never block), so the dispatchers are
stopped in a new thread (a greenlet under gevent's monkey patching).

:func:`stop_streams` (also exported by :mod:`flask_notifications.stream`) does
the same on demand, for a server that stops in some other way (a shutdown hook
of its own, or ``gevent.signal_handler``).
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import threading
import weakref
from collections.abc import Iterable
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dispatcher import Dispatcher

logger = logging.getLogger("flask_notifications.stream")

#: The signals servers stop on: ``SIGTERM`` (graceful), ``SIGINT`` and
#: ``SIGQUIT`` (quick; gunicorn's workers get ``SIGQUIT`` on ``Ctrl-C``).
SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)

_lock = threading.Lock()
_dispatchers: weakref.WeakSet[Dispatcher] = weakref.WeakSet()
_previous: dict[int, Any] = {}  # signal number -> the handler chained to


def watch(dispatcher: Dispatcher, signals: Iterable[int] = SIGNALS) -> None:
    """Stop ``dispatcher`` when this process gets one of ``signals``; chain
    the handler on first use in this process.

    :param dispatcher: a dispatcher just started in this process.
    :param signals: the signals to chain a handler for.
    """
    with _lock:
        _dispatchers.add(dispatcher)
    for signum in signals:
        try:
            current = signal.getsignal(signum)
            if current is _on_signal or not callable(current):
                continue  # chained already; or SIG_DFL, SIG_IGN, or not set from Python
            _previous[signum] = current
            signal.signal(signum, _on_signal)
        except ValueError:  # not the main thread (of the main interpreter)
            logger.debug("streams do not end on signal %s: not in the main thread", signum)
            return


def stop_streams() -> None:
    """Stop every dispatcher of this process, ending its streams.

    Blocks until each has stopped (a few milliseconds, at most 10 s): call it
    from a shutdown hook, not from a signal handler.
    """
    pid = os.getpid()
    with _lock:
        dispatchers = [d for d in _dispatchers if d.pid == pid]
    for dispatcher in dispatchers:
        try:
            dispatcher.stop()
        except Exception:  # noqa: BLE001 - stop the others regardless
            logger.exception("could not stop a notifications dispatcher")


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # _thread.start_new_thread, looked up now, is gevent's spawn once gevent
    # patched the thread module: it only schedules, never waits (unlike
    # Thread.start), so it is safe even in gevent's hub.
    _thread.start_new_thread(stop_streams, ())
    previous = _previous.get(signum)
    if callable(previous):
        previous(signum, frame)


__all__ = ["SIGNALS", "stop_streams", "watch"]
