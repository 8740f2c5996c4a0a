"""The :class:`Backend` interface: how pushed events reach every web process.

A backend carries event JSON on channels named by hub id. The default is
:class:`~flask_notifications.pubsub.redis_pubsub.RedisPubSub`; another broker
plugs in by subclassing :class:`Backend` and naming the subclass in the
``NOTIFICATIONS_BACKEND`` (or the documented ``BACKEND``) configuration key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from flask import Flask


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
