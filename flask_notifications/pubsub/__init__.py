"""Publish/subscribe backends: :class:`Backend` and the default :class:`RedisPubSub`."""

from .backend import Backend
from .redis_pubsub import RedisPubSub

__all__ = ["Backend", "RedisPubSub"]
