"""The :class:`SseNotifier`: one hub's channel as Server-Sent Event frames.

This is 0.1's ``SseNotifier``, returned by :meth:`Notifications.sse_notifier_for
<flask_notifications.Notifications.sse_notifier_for>`: a backend of its own,
subscribed to one hub, read by one thread. It carries *every* event published
on the hub, whatever its recipients, and holds one broker connection: use it
in scripts, tests and server-side relays. Browsers get their streams from the
blueprint or :meth:`~flask_notifications.Notifications.flask_sse_notifier`,
which check who may see what and share one subscription per process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..event import Event
from ..pubsub.backend import Backend
from .framing import frame


class SseNotifier:
    """Subscribes ``backend`` to ``hub_id`` and iterates the hub's messages as
    SSE frames (bytes): ``id:`` (the history id, when the backend keeps
    history), ``event:`` (the event's type) and ``data:`` (its JSON).

    The subscription starts in the constructor, so what is published after
    it returns is received. Iterating blocks between messages; close the
    notifier (or leave its ``with`` block) to release the subscription.

    :param backend: a backend no one else reads; it becomes :attr:`backend`.
    :param hub_id: the hub's id (:attr:`EventHub.hub_id
        <flask_notifications.event_hub.EventHub.hub_id>`).
    """

    def __init__(self, backend: Backend, hub_id: str) -> None:
        if not isinstance(hub_id, str) or not hub_id:
            raise TypeError("SseNotifier() needs a hub id string")
        #: The subscribed backend: ``backend.listen()`` yields the raw messages.
        self.backend = backend
        #: The hub id it is subscribed to.
        self.hub_id = hub_id
        backend.subscribe(hub_id)

    def __iter__(self) -> Iterator[bytes]:
        for message in self.backend.listen():
            if message.get("type", "message") == "message":
                yield self.frame(message)

    def frame(self, message: dict[str, Any]) -> bytes:
        """The SSE frame of one message of :meth:`Backend.listen
        <flask_notifications.pubsub.backend.Backend.listen>`. Messages that are
        not events (unread counts) are framed as ``message``.

        :param message: a ``{"id": ..., "data": event JSON}`` mapping.
        """
        data = message["data"]
        if isinstance(data, bytes | bytearray):
            data = data.decode("utf-8")
        try:
            event_type = Event.from_json(data)["event_type"]
        except ValueError:  # not an event
            event_type = "message"
        return frame(message.get("id"), event_type, data)

    def close(self) -> None:
        """End the subscription (:meth:`Backend.close
        <flask_notifications.pubsub.backend.Backend.close>`)."""
        self.backend.close()

    def __enter__(self) -> SseNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
