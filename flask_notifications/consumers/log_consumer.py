"""The :class:`LogConsumer`: appends events to a file as JSON lines."""

from __future__ import annotations

import fcntl
import os
from typing import Any

from ..event import Event
from .consumer import Consumer


class LogConsumer(Consumer):
    """Appends one JSON line per event to ``filepath``.

    Lines stay whole when several worker processes write to the same file:
    each line goes out in a single ``write`` on an ``O_APPEND`` descriptor
    under an exclusive ``flock``. The file is opened per event, so log
    rotation needs no signal.

    :param filepath: the file to append to; created when missing.
    """

    def __init__(self, filepath: str | os.PathLike[str]) -> None:
        self.filepath = os.fspath(filepath)

    def consume(self, event: Event, *args: Any, **kwargs: Any) -> None:
        line = (event.to_json() + "\n").encode("utf-8")
        fd = os.open(self.filepath, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(line)
            while view:  # a regular file takes it in one go; loop for safety
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)  # closing releases the lock
