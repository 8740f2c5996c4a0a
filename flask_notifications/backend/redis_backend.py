"""0.1 module path of the default backend: ``RedisBackend`` is
:class:`~flask_notifications.pubsub.redis_pubsub.RedisPubSub`, so 0.1's
``BACKEND = "flask_notifications.backend.redis_backend.RedisBackend"`` selects it."""

from ..pubsub.redis_pubsub import RedisPubSub

#: 0.1's name of :class:`~flask_notifications.pubsub.redis_pubsub.RedisPubSub`.
RedisBackend = RedisPubSub

__all__ = ["RedisBackend"]
