"""The :class:`PushConsumer`: publishes events to the hub's channel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from flask import Flask, current_app

from .._state import get_state, has_state
from ..event import Event
from ..inbox.groups import publish_group_items
from ..pubsub.backend import Backend
from ..pubsub.redis_pubsub import RedisPubSub
from ._badge import stores_beside
from ._recipients import allowed_recipients
from .consumer import Consumer

if TYPE_CHECKING:
    import redis

    from ..event_hub import EventHub


class PushConsumer(Consumer):
    """Publishes each event's JSON on the backend channel of a hub; every
    subscriber of that channel (see :meth:`Backend.listen
    <flask_notifications.pubsub.backend.Backend.listen>`) receives it.

    An event with a ``group``, on a hub with a
    :class:`~flask_notifications.consumers.StoreConsumer` (registered before
    this consumer, so that it has stored the event), is published as each
    recipient's updated inbox item instead: the stored event with ``group``,
    ``count``, ``actors``, ``actor_count`` and ``notification_id``, so that a
    client replaces the item it shows (see :doc:`/workflows`, Grouping).

    Given a Redis client, it publishes through the application's configured
    backend class (``NOTIFICATIONS_BACKEND``), so publishers and subscribers
    agree; given a backend instance, through that one.

    :param redis_or_backend: a :class:`redis.Redis` client or any
        :class:`~flask_notifications.pubsub.backend.Backend`.
    :param hub_id: the channel: a hub id (or the
        :class:`~flask_notifications.event_hub.EventHub` itself).
    """

    def __init__(self, redis_or_backend: redis.Redis | Backend, hub_id: str | EventHub) -> None:
        #: The backend given to the constructor, or ``None`` when given a client.
        self.backend: Backend | None = None
        #: The broker client given to the constructor, or ``None``.
        self.client: Any = None
        if isinstance(redis_or_backend, Backend):
            self.backend = redis_or_backend
        else:
            self.client = redis_or_backend
        self.hub_id: str = getattr(hub_id, "hub_id", hub_id)  # type: ignore[arg-type]
        if not isinstance(self.hub_id, str) or not self.hub_id:
            raise TypeError("PushConsumer() needs a hub id string or an EventHub")
        # One backend per app, built on first use (never per event).
        self._backends: WeakKeyDictionary[Flask, Backend] = WeakKeyDictionary()
        self._plain: Backend | None = None

    def backend_for_current_app(self) -> Backend:
        """The backend this consumer publishes through in the current context."""
        if self.backend is not None:
            return self.backend
        state = get_state() if has_state() else None
        if state is None:
            if self._plain is None:
                self._plain = RedisPubSub(self.client)
            return self._plain
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        backend = self._backends.get(app)
        if backend is None:
            backend = self._backends[app] = state.backend_class.from_app(app, self.client)
        return backend

    #: The preferences channel this consumer honours.
    channel = "stream"
    #: Published for the open streams: no receipt (the delivery log's ``sent``).
    delivery_status = "sent"

    def consume(self, event: Event, *args: Any, **kwargs: Any) -> None:
        recipients = event["recipients"]
        backend = self.backend_for_current_app()
        if recipients:
            allowed = allowed_recipients(event, self.channel)
            if not allowed:
                return  # everyone opted out: an empty list would mean "broadcast"
            if event.get("group") is not None and has_state() and stores_beside(self):
                allowed = publish_group_items(backend, self.hub_id, event, allowed)
                if not allowed:
                    return
            if len(allowed) != len(recipients):
                event = Event.from_dict(dict(event, recipients=allowed))
        backend.publish(self.hub_id, event.to_json())
