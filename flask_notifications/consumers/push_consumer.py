"""The :class:`PushConsumer`: publishes events to the hub's channel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..pubsub.backend import Backend
from ..pubsub.redis_pubsub import RedisPubSub
from .consumer import Consumer

if TYPE_CHECKING:
    import redis

    from ..event import Event
    from ..event_hub import EventHub


class PushConsumer(Consumer):
    """Publishes each event's JSON on the backend channel of a hub, from where
    every web process streams it to its browsers.

    :param redis_or_backend: a :class:`redis.Redis` client (wrapped in
        :class:`~flask_notifications.pubsub.redis_pubsub.RedisPubSub`) or any
        :class:`~flask_notifications.pubsub.backend.Backend`.
    :param hub_id: the channel: a hub id (or the :class:`EventHub` itself).
    """

    def __init__(self, redis_or_backend: redis.Redis | Backend, hub_id: str | EventHub) -> None:
        self.backend = (
            redis_or_backend
            if isinstance(redis_or_backend, Backend)
            else RedisPubSub(redis_or_backend)
        )
        self.hub_id: str = getattr(hub_id, "hub_id", hub_id)  # type: ignore[arg-type]
        if not isinstance(self.hub_id, str) or not self.hub_id:
            raise TypeError("PushConsumer() needs a hub id string or an EventHub")

    def consume(self, event: Event, *args: Any, **kwargs: Any) -> None:
        self.backend.publish(self.hub_id, event.to_json())
