"""The default backend: Redis pub/sub, with a capped Redis Stream of history per hub."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from redis import exceptions as redis_exceptions

from .backend import Backend, History, parse_stream_id

if TYPE_CHECKING:
    import redis
    from flask import Flask

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
    Subscribing opens one dedicated connection, created on first use.

    :param redis_client: a :class:`redis.Redis` client.
    :param prefix: namespace of the Redis channel and key names, so several
        applications can share one Redis.
    :param history_maxlen: how many events of each hub to keep for replay.
    """

    #: Prefix of every Redis channel and key this backend uses.
    default_prefix = "flask_notifications:"

    def __init__(
        self,
        redis_client: redis.Redis,
        prefix: str | None = None,
        history_maxlen: int = DEFAULT_HISTORY_MAXLEN,
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
        self._publish = redis_client.register_script(_PUBLISH)
        self._pubsub: redis.client.PubSub | None = None

    @classmethod
    def from_app(cls, app: Flask, broker: Any) -> RedisPubSub:
        config = app.config
        return cls(
            broker,
            prefix=config.get("NOTIFICATIONS_REDIS_PREFIX", cls.default_prefix[:-1]) + ":",
            history_maxlen=config.get("NOTIFICATIONS_HISTORY_MAXLEN", DEFAULT_HISTORY_MAXLEN),
        )

    def channel_name(self, channel: str) -> str:
        """Return the Redis channel that carries hub ``channel``.

        :param channel: a hub id.
        """
        return self.prefix + channel

    def history_key(self, channel: str) -> str:
        """Return the Redis Stream that keeps hub ``channel``'s history.

        :param channel: a hub id.
        """
        return f"{self.prefix}{{{channel}}}:history"

    def _trimmed_key(self, channel: str) -> str:
        return f"{self.prefix}{{{channel}}}:trimmed"

    def publish(self, channel: str, message: str) -> str:
        """Append ``message`` to the hub's history and publish it, atomically.

        :param channel: a hub id.
        :param message: the event's JSON form.
        :returns: the history id, also the ``id`` of the live message.
        """
        keys = [self.history_key(channel), self._trimmed_key(channel)]
        result = self._publish(
            keys=keys, args=[message, self.history_maxlen, self.prefix + channel]
        )
        return result.decode() if isinstance(result, bytes) else str(result)

    def publish_transient(self, channel: str, messages: list[str]) -> None:
        """Publish ``messages`` live only (no history entry, no id), all in one
        round trip: unread counts for thousands of users cost one pipeline.

        :param channel: a hub id.
        :param messages: event JSON strings.
        """
        pipe = self.redis.pipeline(transaction=False)
        name = self.prefix + channel
        for message in messages:
            pipe.publish(name, message)
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
        last = info["last-generated-id"]
        last_key = parse_id(last.decode() if isinstance(last, bytes) else last)
        if last_key is not None and after_key > last_key:
            return History([], reset=True)  # an id from a Redis that lost its data
        if trimmed is not None:
            trimmed_key = parse_id(trimmed.decode() if isinstance(trimmed, bytes) else trimmed)
            if trimmed_key is not None and after_key < trimmed_key:
                return History([], reset=True)
        return History(_entries(entries))

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
            data = _text(message["data"])
            event_id = None
            if data[:1] != "{":  # "<history id> <event JSON>"
                event_id, _, data = data.partition(" ")
            yield {
                "type": "message",
                "channel": _text(message["channel"])[skip:],
                "id": event_id,
                "data": data,
            }

    def close(self) -> None:
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None


def _entries(entries: list[tuple[Any, dict[Any, Any]]]) -> list[tuple[str, str]]:
    return [
        (_text(i), _text(fields[b"e"] if b"e" in fields else fields["e"])) for i, fields in entries
    ]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
