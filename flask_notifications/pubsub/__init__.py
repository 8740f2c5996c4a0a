"""Publish/subscribe backends: ``Backend``, the default ``RedisPubSub``, and
``MemoryPubSub`` for one process."""

from .backend import Backend, History
from .memory_pubsub import MemoryPubSub
from .redis_pubsub import RedisPubSub

__all__ = ["Backend", "History", "MemoryPubSub", "RedisPubSub"]
