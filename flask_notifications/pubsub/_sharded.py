"""Sharded pub/sub on a Redis Cluster: one subscription per shard.

``SSUBSCRIBE`` (Redis 7) subscribes on the shard that owns the channel's hash
slot, and ``SPUBLISH`` delivers a message on that shard only, so a message
never crosses the cluster bus. :class:`ShardedSubscription` holds one
connection per shard that owns at least one of its channels, whatever the
number of channels (hubs) or of streams, and merges what they receive.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from redis import exceptions as redis_exceptions
from redis.cluster import RedisCluster

_END = object()


class ShardedSubscription:
    """The shard subscriptions of one reader.

    Subscribe first, then iterate :meth:`listen` from one thread: it starts a
    reader thread (a greenlet under gevent) per shard connection. A channel
    whose slot moved to another shard (a resharding or a failover) ends the
    iteration with :class:`redis.ConnectionError`, so the caller subscribes
    again from a fresh view of the cluster and backfills from history.

    :param cluster: the cluster client.
    """

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        #: Node name -> the subscription on that shard.
        self.shards: dict[str, Any] = {}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        #: Channels this reader unsubscribes from (any other SUNSUBSCRIBE
        #: comes from the server: the channel's slot moved).
        self._leaving: set[bytes] = set()
        self._reading = 0
        self._lock = threading.Lock()
        self._closed = False

    def subscribe(self, *channels: str) -> None:
        """``SSUBSCRIBE`` to ``channels``, on the shard of each one's slot.

        :param channels: Redis channel names.
        """
        by_node: dict[str, tuple[Any, dict[int, list[str]]]] = {}
        for channel in channels:
            slot = self.cluster.keyslot(channel)
            node = self.cluster.nodes_manager.get_node_from_slot(slot)
            slots = by_node.setdefault(node.name, (node, {}))[1]
            slots.setdefault(slot, []).append(channel)
        for name, (node, slots) in by_node.items():
            pubsub = self.shards.get(name)
            if pubsub is None:
                client = self.cluster.get_redis_connection(node)
                pubsub = self.shards[name] = client.pubsub()
            for names in slots.values():  # one command per slot: no CROSSSLOT
                pubsub.ssubscribe(*names)

    def unsubscribe(self, *channels: str) -> None:
        """``SUNSUBSCRIBE`` from ``channels``; from everything when empty.

        :param channels: Redis channel names.
        """
        for pubsub in self.shards.values():
            mine = [c.encode() for c in channels if c.encode() in pubsub.shard_channels]
            if mine or not channels:
                self._leaving.update(mine or pubsub.shard_channels)
                pubsub.sunsubscribe(*mine)

    def listen(self) -> Iterator[dict[str, Any]]:
        """Yield every ``smessage`` of every shard, as redis-py parses it.

        :raises redis.ConnectionError: when a shard's connection fails, or a
            shard gave up a channel (its slot moved).
        """
        shards = list(self.shards.items())
        self._reading = len(shards)
        if not shards:
            return
        for name, pubsub in shards:
            thread = threading.Thread(
                target=self._read, args=(pubsub,), name=f"notifications-shard-{name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        while True:
            item = self._queue.get()
            if self._closed:
                return
            if isinstance(item, BaseException):
                raise item
            if item is _END:  # every channel was unsubscribed from
                return
            yield item

    def _read(self, pubsub: Any) -> None:
        put = self._queue.put
        try:
            for message in pubsub.listen():
                kind = message["type"]
                if kind in ("smessage", b"smessage"):
                    put(message)
                elif kind in ("sunsubscribe", b"sunsubscribe") and not self._closed:
                    channel = message["channel"]
                    key = channel.encode() if isinstance(channel, str) else channel
                    if key not in self._leaving:
                        raise redis_exceptions.ConnectionError(
                            f"shard channel {channel!r} moved to another node"
                        )
                    self._leaving.discard(key)
        except Exception as exc:  # noqa: BLE001 - handed to the reader of listen()
            put(exc)
            return
        with self._lock:  # this shard has no channel left
            self._reading -= 1
            if not self._reading:
                put(_END)

    def close(self) -> None:
        """Close every shard connection and end :meth:`listen`."""
        self._closed = True
        for pubsub in self.shards.values():
            try:
                pubsub.close()
            except Exception:  # noqa: BLE001 - a dead shard's connection is gone anyway
                pass
        self.shards.clear()
        self._queue.put(_END)
