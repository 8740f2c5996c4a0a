"""Publish/subscribe backends: ``Backend`` and the default ``RedisPubSub``."""

from .backend import Backend, History
from .redis_pubsub import RedisPubSub

__all__ = ["Backend", "History", "RedisPubSub"]
