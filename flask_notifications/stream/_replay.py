"""What a reconnecting client missed, read from the history a page at a time.

``Last-Event-ID: 0-0`` once read a hub's whole history into memory (10,000
events of 4 KB: 90 MB for one request). A replay now reads pages of
:data:`PAGE` entries and stops after ``NOTIFICATIONS_REPLAY_MAX`` of them:
a client that missed more gets a ``reset`` event (reload your state) instead
of the backlog.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .framing import frame

if TYPE_CHECKING:
    from ..pubsub.backend import Backend
    from .streams import Key

#: History entries read per round trip.
PAGE = 200


def visible(data: str, identity: str | None, broadcasts: bool) -> tuple[bool, str]:
    """Whether a stream of ``identity`` may see the event ``data``, and its type.

    :param data: the event JSON from the history.
    :param identity: the stream's user id, or ``None``.
    :param broadcasts: whether the stream receives events without recipients.
    """
    try:
        event = json.loads(data)
        if "event_type" not in event:  # not an event (e.g. an unread-counts message)
            return False, ""
        recipients = event.get("recipients") or ()
        event_type = str(event.get("event_type") or "message")
    except (ValueError, AttributeError, TypeError):
        return False, ""
    if not recipients:
        return broadcasts, event_type
    return identity is not None and identity in recipients, event_type


class Replay:
    """The events of ``hub_id`` after ``after`` that one stream may see.

    :param backend: the backend whose history is read.
    :param hub_id: the hub.
    :param identity: the stream's user id, or ``None``.
    :param broadcasts: whether the stream receives broadcasts.
    :param after: the client's ``Last-Event-ID``.
    :param limit: the most history entries replayed (``NOTIFICATIONS_REPLAY_MAX``).
    """

    def __init__(
        self,
        backend: Backend,
        hub_id: str,
        identity: str | None,
        broadcasts: bool,
        after: str,
        limit: int,
    ) -> None:
        self.backend = backend
        self.hub_id = hub_id
        self.identity = identity
        self.broadcasts = broadcasts
        self.limit = limit
        self.read = 0
        self.done = False
        #: The id the stream resumes live events after.
        self.last_key: Key = backend.id_key(after)
        self._after = after

    def next_page(self) -> bytes:
        """The frames of the next page (``b""`` once done); a ``reset`` frame
        when the history lost what the client missed, or it missed more than
        the limit."""
        if self.done:
            return b""
        remaining = self.limit - self.read
        # At the limit, read one more entry only to learn whether there is more.
        history = self.backend.history(self.hub_id, self._after, min(PAGE, remaining) or 1)
        if history.reset or (remaining == 0 and history.entries):
            return self._reset()
        frames = []
        for event_id, data in history.entries:
            shown, event_type = visible(data, self.identity, self.broadcasts)
            if shown:
                frames.append(frame(event_id, event_type, data))
            self._after = event_id
            self.last_key = self.backend.id_key(event_id)
        self.read += len(history.entries)
        if len(history.entries) < min(PAGE, remaining):
            self.done = True
        return b"".join(frames)

    def _reset(self) -> bytes:
        self.done = True
        now = self.backend.last_id(self.hub_id)
        self.last_key = self.backend.id_key(now) if now else None
        return frame(now or "", "reset", "{}")
