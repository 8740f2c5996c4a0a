"""Publish/subscribe backends: ``Backend`` and the default ``RedisPubSub``."""

from .backend import Backend
from .redis_pubsub import RedisPubSub

__all__ = ["Backend", "RedisPubSub"]
