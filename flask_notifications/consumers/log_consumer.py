"""The :class:`LogConsumer`: appends events to a file as JSON lines."""

from __future__ import annotations

import fcntl
import os
from typing import Any

from ..event import Event
from .consumer import Consumer


class LogConsumer(Consumer):
    """Appends one line per event to ``filepath``: by default the event's
    JSON (override :meth:`write_event` to choose the format).

    Lines stay whole when several worker processes write to the same file:
    each line goes out in a single ``write`` on an ``O_APPEND`` descriptor
    under an exclusive ``flock``. The file is opened per event, so log
    rotation needs no signal.

    :param filepath: the file to append to, created when missing; relative
        paths are relative to the worker's working directory.
    """

    def __init__(self, filepath: str | os.PathLike[str] = "events.log") -> None:
        self.filepath = os.fspath(filepath)

    def write_event(self, event_json: str) -> str:
        """Return the text written for one event (the 0.1 hook). A newline is
        added unless the text ends with one.

        :param event_json: the event's JSON form.
        :returns: by default, ``event_json`` itself.
        """
        return event_json

    def consume(self, event: Event, *args: Any, **kwargs: Any) -> None:
        """Append the line of ``event`` to ``filepath``.

        :param event: the event, or its JSON form.
        """
        text = self.write_event(event.to_json())
        if not text.endswith("\n"):
            text += "\n"
        line = text.encode("utf-8")
        fd = os.open(self.filepath, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(line)
            while view:  # a regular file takes it in one go; loop for safety
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)  # closing releases the lock
