"""The default backend: Redis pub/sub."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .backend import Backend

if TYPE_CHECKING:
    import redis


class RedisPubSub(Backend):
    """Carries events over Redis pub/sub, one Redis channel per hub.

    Publishing needs no extra connection: it uses the client's pool.
    Subscribing opens one dedicated connection, created on first use.

    :param redis_client: a :class:`redis.Redis` client.
    :param prefix: namespace of the Redis channel names, so several
        applications can share one Redis.
    """

    #: Prefix of every Redis channel this backend uses.
    default_prefix = "flask_notifications:"

    def __init__(self, redis_client: redis.Redis, prefix: str | None = None) -> None:
        self.redis = redis_client
        self.prefix = self.default_prefix if prefix is None else prefix
        self._pubsub: redis.client.PubSub | None = None

    def channel_name(self, channel: str) -> str:
        """Return the Redis channel that carries hub ``channel``.

        :param channel: a hub id.
        """
        return self.prefix + channel

    def publish(self, channel: str, message: str) -> None:
        self.redis.publish(self.prefix + channel, message)

    @property
    def pubsub(self) -> redis.client.PubSub:
        """The Redis subscription of this backend (created on first use)."""
        if self._pubsub is None:
            self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        return self._pubsub

    def subscribe(self, *channels: str) -> None:
        self.pubsub.subscribe(*(self.prefix + c for c in channels))

    def unsubscribe(self, *channels: str) -> None:
        self.pubsub.unsubscribe(*(self.prefix + c for c in channels))

    def listen(self) -> Iterator[dict[str, Any]]:
        skip = len(self.prefix)
        for message in self.pubsub.listen():
            if message["type"] != "message":
                continue
            channel, data = message["channel"], message["data"]
            yield {
                "type": "message",
                "channel": (channel.decode() if isinstance(channel, bytes) else channel)[skip:],
                "data": data.decode("utf-8") if isinstance(data, bytes) else data,
            }

    def close(self) -> None:
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None
