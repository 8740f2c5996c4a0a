"""The :class:`Backend` interface: how pushed events reach every web process.

A backend carries event JSON on channels named by hub id. The default is
:class:`~flask_notifications.pubsub.redis_pubsub.RedisPubSub`; another broker
plugs in by subclassing :class:`Backend` and naming the subclass in the
``NOTIFICATIONS_BACKEND`` (or the documented ``BACKEND``) configuration key.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from flask import Flask


_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})", re.ASCII)
_MAX_PART = 2**64 - 1


def parse_stream_id(value: str) -> tuple[int, int] | None:
    """Return a Redis Stream id (``"1700000000000-0"``) as a comparable
    tuple, or ``None`` when it is malformed (a part beyond 64 bits included).

    :param value: the id, e.g. from a ``Last-Event-ID`` header.
    """
    match = _STREAM_ID.fullmatch(value)
    if match is None:
        return None
    key = int(match[1]), int(match[2])
    # Redis refuses parts beyond 64 bits: such an id is malformed, not an outage.
    return key if max(key) <= _MAX_PART else None


class History(NamedTuple):
    """What :meth:`Backend.history` returns."""

    #: ``(id, event JSON)`` pairs, oldest first.
    entries: list[tuple[str, str]]
    #: ``True`` when the reader missed events that are no longer kept: it
    #: should reload its state instead of replaying.
    reset: bool = False


class Backend(ABC):
    """A publish/subscribe channel between consumers and web processes.

    Publishing is safe from any thread. A backend instance holds at most one
    subscription; :meth:`subscribe` then :meth:`listen` is used by a single
    reader thread.

    What streams need from a backend with history: the id :meth:`publish`
    returns and :meth:`listen` yields with each message, :meth:`id_key` to
    order those ids, :meth:`history` to replay what followed an id, and
    :meth:`last_id`. Streams never parse ids themselves.
    """

    @classmethod
    def from_app(cls, app: Flask, broker: Any) -> Backend:
        """Build a backend for ``app``; override to read your own settings.

        :param app: the Flask application being served.
        :param broker: the client given as ``init_app(broker=...)``, or the
            Redis client built from ``NOTIFICATIONS_REDIS_URL``.
        """
        return cls(broker)  # type: ignore[call-arg]

    @abstractmethod
    def publish(self, channel: str, message: str) -> str | None:
        """Send ``message`` (event JSON) to every subscriber of ``channel``.

        :param channel: a hub id.
        :param message: the event's JSON form.
        :returns: the message's history id, or ``None`` for a backend without history.
        """

    def publish_transient(self, channel: str, messages: list[str]) -> None:
        """Publish state that is not worth replaying (unread counts), without
        history ids. The default publishes each message with :meth:`publish`.

        :param channel: a hub id.
        :param messages: event JSON strings.
        """
        for message in messages:
            self.publish(channel, message)

    def id_key(self, event_id: str) -> Any:
        """Return ``event_id`` as a key that orders ids of this backend (a
        later event's key is greater), or ``None`` when ``event_id`` is not an
        id this backend could have made (a malformed ``Last-Event-ID``).

        Streams compare ids only through this method. The default reads
        ``<integer>-<integer>`` ids, as Redis Streams make them
        (:func:`parse_stream_id`); a backend with ids of another form
        overrides it.

        :param event_id: an id from :meth:`publish`, :meth:`listen`,
            :meth:`history` or :meth:`last_id`, or one a client sent.
        """
        return parse_stream_id(event_id)

    def history(self, channel: str, after: str | None, count: int | None = None) -> History:
        """Return what ``channel`` published after the id ``after``, for replay.

        The default, for backends that keep no history, returns nothing and,
        when ``after`` is given, asks the reader to reset.

        :param channel: a hub id.
        :param after: the last id the reader saw; ``None`` for the whole history.
        :param count: at most this many entries.
        """
        return History([], reset=after is not None)

    def last_id(self, channel: str) -> str | None:
        """Return the id of the newest event of ``channel``; ``None`` without
        history (the default).

        :param channel: a hub id.
        """
        return None

    @abstractmethod
    def subscribe(self, *channels: str) -> None:
        """Start receiving messages published on ``channels`` (hub ids).

        :param channels: one or more hub ids.
        """

    def unsubscribe(self, *channels: str) -> None:
        """Stop receiving messages from ``channels``; all channels when empty.

        :param channels: hub ids.
        """
        raise NotImplementedError

    @abstractmethod
    def listen(self) -> Iterator[dict[str, Any]]:
        """Yield ``{"type": "message", "channel": hub_id, "id": history_id,
        "data": event_json}`` for each message published on a subscribed
        channel, blocking between them (``id`` is ``None`` without history)."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release the subscription's resources."""
