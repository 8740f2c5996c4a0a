"""The default backend: Redis pub/sub, with a capped Redis Stream of history per hub."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from redis import exceptions as redis_exceptions

from .._redis import ReplicaWait, is_cluster, replica_wait
from ._sharded import ShardedSubscription
from .backend import Backend, History, parse_stream_id

if TYPE_CHECKING:
    import redis
    from flask import Flask
    from redis.cluster import RedisCluster

#: Default for ``NOTIFICATIONS_HISTORY_MAXLEN``.
DEFAULT_HISTORY_MAXLEN = 10_000

# One script, so the history entry and the live message are written together
# and carry the same id. Trimming is exact, and the newest trimmed id is kept:
# a client that last saw an older id has missed something and must reset.
_PUBLISH = """
local maxlen = tonumber(ARGV[2])
local excess = redis.call('XLEN', KEYS[1]) + 1 - maxlen
if excess > 0 then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('SET', KEYS[2], gone[#gone][1])
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '*', 'e', ARGV[1])
redis.call('PUBLISH', ARGV[3], id .. ' ' .. ARGV[1])
return id
"""
# On a Redis Cluster: sharded pub/sub, on the channel in the hub's hash slot.
_SPUBLISH = _PUBLISH.replace("'PUBLISH'", "'SPUBLISH'")


def parse_id(value: str) -> tuple[int, int] | None:
    """Return a history id (``"1700000000000-0"``) as a comparable tuple, or
    ``None`` when it is malformed.

    :param value: the id, e.g. from a ``Last-Event-ID`` header.
    """
    return parse_stream_id(value)


class RedisPubSub(Backend):
    """Carries events over Redis pub/sub, one Redis channel per hub, and keeps
    the last ``history_maxlen`` events of each hub in a Redis Stream.

    Publishing needs no extra connection: it uses the client's pool.
    Subscribing opens one dedicated connection, created on first use; on a
    Redis Cluster, one per shard that owns a subscribed hub (sharded pub/sub,
    Redis 7), whatever the number of hubs.

    :param redis_client: a :class:`redis.Redis` client (one server, or a
        Sentinel-managed master), or a :class:`redis.cluster.RedisCluster`.
    :param prefix: namespace of the Redis channel and key names, so several
        applications can share one Redis.
    :param history_maxlen: how many events of each hub to keep for replay.
    :param wait: replicas each publish waits for (Redis ``WAIT``), so that a
        failover keeps it; none when omitted.
    """

    #: Prefix of every Redis channel and key this backend uses.
    default_prefix = "flask_notifications:"

    def __init__(
        self,
        redis_client: redis.Redis | RedisCluster,
        prefix: str | None = None,
        history_maxlen: int = DEFAULT_HISTORY_MAXLEN,
        wait: ReplicaWait | None = None,
    ) -> None:
        if (
            isinstance(history_maxlen, bool)
            or not isinstance(history_maxlen, int)
            or history_maxlen < 1
        ):
            raise ValueError(f"history_maxlen must be a positive integer, not {history_maxlen!r}")
        self.redis = redis_client
        self.prefix = self.default_prefix if prefix is None else prefix
        self.history_maxlen = history_maxlen
        #: Whether the client is a Redis Cluster (sharded pub/sub).
        self.cluster = is_cluster(redis_client)
        self.wait = wait if wait is not None and wait.replicas else None
        self._publish = redis_client.register_script(_SPUBLISH if self.cluster else _PUBLISH)
        self._pubsub: redis.client.PubSub | None = None
        self._sharded: ShardedSubscription | None = None
        self._hubs: dict[bytes, str] = {}

    @classmethod
    def from_app(cls, app: Flask, broker: Any) -> RedisPubSub:
        config = app.config
        return cls(
            broker,
            prefix=config.get("NOTIFICATIONS_REDIS_PREFIX", cls.default_prefix[:-1]) + ":",
            history_maxlen=config.get("NOTIFICATIONS_HISTORY_MAXLEN", DEFAULT_HISTORY_MAXLEN),
            wait=replica_wait(config, broker),
        )

    def channel_name(self, channel: str) -> str:
        """Return the Redis channel that carries hub ``channel``:
        ``<prefix><hub id>``, or on a Redis Cluster ``<prefix>{<hub id>}``,
        in the hash slot of the hub's history.

        :param channel: a hub id.
        """
        return f"{self.prefix}{{{channel}}}" if self.cluster else self.prefix + channel

    def history_key(self, channel: str) -> str:
        """Return the Redis Stream that keeps hub ``channel``'s history.

        :param channel: a hub id.
        """
        return f"{self.prefix}{{{channel}}}:history"

    def _trimmed_key(self, channel: str) -> str:
        return f"{self.prefix}{{{channel}}}:trimmed"

    def publish(self, channel: str, message: str) -> str:
        """Append ``message`` to the hub's history and publish it, atomically
        (then wait for the replicas, when :attr:`wait` asks to).

        :param channel: a hub id.
        :param message: the event's JSON form.
        :returns: the history id, also the ``id`` of the live message.
        """
        keys = [self.history_key(channel), self._trimmed_key(channel)]
        args = [message, self.history_maxlen, self.channel_name(channel)]
        wait = self.wait
        target = wait.target() if wait is not None else 0
        if not target:
            result = self._publish(keys=keys, args=args)
        else:  # one round trip: the script, then WAIT
            pipe = self.redis.pipeline(transaction=False)
            self._publish(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", target, wait.timeout_ms)  # type: ignore[union-attr]
            result, acknowledged = pipe.execute()
            wait.record(target, int(acknowledged))  # type: ignore[union-attr]
        return result.decode() if isinstance(result, bytes) else str(result)

    def publish_transient(self, channel: str, messages: list[str]) -> None:
        """Publish ``messages`` live only (no history entry, no id), all in one
        round trip: unread counts for thousands of users cost one pipeline.

        :param channel: a hub id.
        :param messages: event JSON strings.
        """
        pipe = self.redis.pipeline(transaction=False)
        name = self.channel_name(channel)
        send = pipe.spublish if self.cluster else pipe.publish
        for message in messages:
            send(name, message)
        pipe.execute()

    def last_id(self, channel: str) -> str | None:
        """Return the id of the newest event of hub ``channel``, or ``None``.

        :param channel: a hub id.
        """
        try:
            info = self.redis.xinfo_stream(self.history_key(channel))
        except redis_exceptions.ResponseError:  # no such stream yet
            return None
        return _text(info["last-generated-id"])

    def history(self, channel: str, after: str | None, count: int | None = None) -> History:
        """Return what hub ``channel`` published after the id ``after``.

        :param channel: a hub id.
        :param after: the last id the reader saw; ``None`` for the whole history.
        :param count: at most this many entries (default: all that follow).
        :returns: the entries, oldest first, or ``reset=True`` when some of
            what followed ``after`` is no longer in the history (or ``after``
            is malformed, or newer than anything this Redis published).
        """
        # No default COUNT: the publisher's history_maxlen bounds the stream, and
        # a reader configured with a smaller one must not silently skip events.
        if after is None:
            entries = self.redis.xrange(self.history_key(channel), count=count)
            return History(_entries(entries))
        after_key = parse_id(after)
        if after_key is None:
            return History([], reset=True)
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(self._trimmed_key(channel))
        pipe.xinfo_stream(self.history_key(channel))
        pipe.xrange(self.history_key(channel), min="(" + after, count=count)
        trimmed, info, entries = pipe.execute(raise_on_error=False)
        if isinstance(info, Exception):  # no history at all: it was lost
            return History([], reset=True)
        # A Redis Cluster transaction leaves the reply's keys as bytes.
        last = info.get("last-generated-id") or info.get(b"last-generated-id")
        last_key = parse_id(_text(last)) if last is not None else None
        if last_key is not None and after_key > last_key:
            return History([], reset=True)  # an id from a Redis that lost its data
        if trimmed is not None:
            trimmed_key = parse_id(trimmed.decode() if isinstance(trimmed, bytes) else trimmed)
            if trimmed_key is not None and after_key < trimmed_key:
                return History([], reset=True)
        return History(_entries(entries))

    @property
    def pubsub(self) -> redis.client.PubSub:
        """The Redis subscription of this backend (created on first use; not
        on a Redis Cluster, whose subscriptions are per shard)."""
        if self._pubsub is None:
            self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        return self._pubsub

    def subscribe(self, *channels: str) -> None:
        names = [self.channel_name(c) for c in channels]
        self._hubs.update((name.encode(), hub) for name, hub in zip(names, channels, strict=True))
        if self.cluster:
            if self._sharded is None:
                self._sharded = ShardedSubscription(self.redis)  # type: ignore[arg-type]
            self._sharded.subscribe(*names)
        else:
            self.pubsub.subscribe(*names)

    def unsubscribe(self, *channels: str) -> None:
        names = [self.channel_name(c) for c in channels]
        if self.cluster:
            if self._sharded is not None:
                self._sharded.unsubscribe(*names)
        else:
            self.pubsub.unsubscribe(*names)

    def listen(self) -> Iterator[dict[str, Any]]:
        if self.cluster:
            if self._sharded is None:
                return
            messages = self._sharded.listen()
        else:
            messages = (m for m in self.pubsub.listen() if m["type"] == "message")
        hubs = self._hubs
        for message in messages:
            data = _text(message["data"])
            event_id = None
            if data[:1] != "{":  # "<history id> <event JSON>"
                event_id, _, data = data.partition(" ")
            raw = message["channel"]
            channel = hubs.get(raw if isinstance(raw, bytes) else raw.encode())
            yield {
                "type": "message",
                "channel": channel if channel is not None else _text(raw)[len(self.prefix) :],
                "id": event_id,
                "data": data,
            }

    def close(self) -> None:
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None
        if self._sharded is not None:
            self._sharded.close()
            self._sharded = None


def _entries(entries: list[tuple[Any, Any]]) -> list[tuple[str, str]]:
    out = []
    for entry_id, fields in entries:
        if not isinstance(fields, dict):  # unparsed (a Redis Cluster transaction): [k, v, ...]
            fields = dict(zip(fields[::2], fields[1::2], strict=True))
        out.append((_text(entry_id), _text(fields[b"e"] if b"e" in fields else fields["e"])))
    return out


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
