"""The :class:`WebPushConsumer`: standard Web Push (VAPID) to the recipients' browsers."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from flask import current_app

from .. import reliability
from .._state import get_state
from .._text import printable
from .._urls import safe_link
from ..delivery import log as delivery_log
from ..errors import (
    InvalidQueryError,
    PushEndpointRefused,
    PushRejected,
    PushServiceUnavailable,
)
from ..event import Event
from ..i18n import by_locale, in_locale, localize
from ..webpush._delivery import MAX_PARALLEL, Pusher, timeout_from_config
from ..webpush._ssrf import EndpointPolicy
from ..webpush.keys import vapid_from_config
from ..webpush.store import PushSubscription
from ._recipients import allowed_recipients, preferences_on, push_data
from .consumer import Consumer

logger = logging.getLogger("flask_notifications")

#: Default :attr:`WebPushConsumer.max_payload_bytes`. Push services accept
#: 4,096 bytes of encrypted body, which leaves 3,993 bytes of payload with the
#: ``aes128gcm`` encoding; the default keeps a margin below that.
MAX_PAYLOAD_BYTES = 3800

#: Custom fields of the event shown at the payload's top level.
_TOP_LEVEL = ("icon", "badge", "tag", "url", "client_action")
#: Dropped, in this order, when the payload is still too large after the
#: data and texts were cut (a cut URL would be a wrong one).
_DROPPABLE = ("badge", "tag", "client_action", "icon", "url")
_ELLIPSIS = "\u2026"


def _dump(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _size(text: str) -> int:
    # "replace": a lone surrogate (possible in JSON input) must not break encoding.
    return len(text.encode("utf-8", "replace"))


def target_key(endpoint: str) -> str:
    """The short key of a subscription in the delivery records (a hash of its endpoint).

    :param endpoint: the subscription's endpoint URL.
    """
    return hashlib.sha256(endpoint.encode("utf-8", "replace")).hexdigest()[:20]


class WebPushConsumer(Consumer):
    """Sends each event as a standard Web Push notification, signed with the
    app's VAPID keys (``NOTIFICATIONS_VAPID_PRIVATE_KEY``,
    ``NOTIFICATIONS_VAPID_PUBLIC_KEY``, ``NOTIFICATIONS_VAPID_CLAIMS_SUB``),
    to every stored browser subscription of the event's recipients, except
    those who opted out of the event type on the ``webpush`` channel. Needs
    ``pywebpush`` (``pip install 'Flask-Notifications[webpush]'``).

    The pushes of one event run concurrently (:attr:`max_parallel` at once),
    each within its ``timeout``; each endpoint is checked again right before
    its push (``https``, public addresses, ``NOTIFICATIONS_WEBPUSH_ALLOWED_HOSTS``;
    see :doc:`/webpush`), and redirects are never followed.

    - A 404 or 410 answer deletes the subscription (the browser unsubscribed),
      and so does an endpoint the rules refuse (logged as a warning).
    - A 5xx or 429 answer, a push service out of reach or one that did not
      answer in time raises
      :class:`~flask_notifications.errors.PushServiceUnavailable`: the task
      retries (``retry_for``), and skips the subscriptions already served.
    - Any other answer (3xx and 4xx) raises
      :class:`~flask_notifications.errors.PushRejected` (after the other
      subscriptions were served): the task becomes a dead letter.

    ``consume`` returns how many notifications the push services accepted.

    :param broadcast: what to do with broadcast events (no recipients): by
        default nothing; with ``True``, push them to every subscription (minus
        the opt-outs).
    :param ttl: seconds a push service keeps a notification for a browser
        that is offline (the ``TTL`` header).
    :param urgency: the ``Urgency`` header: ``"very-low"``, ``"low"``,
        ``"normal"``, ``"high"`` or ``None`` (not sent: ``"normal"``).
    :param timeout: seconds one push may take, from its start to the push
        service's answer; ``None``: ``NOTIFICATIONS_WEBPUSH_TIMEOUT`` (5 s).
    :param max_payload_bytes: size limit of the JSON payload, in UTF-8 bytes.
    :param celery_task_name: the task name (see
        :attr:`~flask_notifications.consumers.consumer.Consumer.celery_task_name`).
    """

    #: The preferences channel this consumer honours.
    channel = "webpush"
    #: Each delivery is recorded; a recipient without a subscription is ``suppressed``.
    delivery_status = "suppressed"
    #: A task of its own: push services answer slowly or not at all at times,
    #: and must delay no other consumer.
    own_task = True
    #: Transient failures, retried: the base class's and
    #: :class:`~flask_notifications.errors.PushServiceUnavailable`.
    retry_for: tuple[type[BaseException], ...] = (*Consumer.retry_for, PushServiceUnavailable)
    #: How many pushes of one event are sent at once.
    max_parallel: int = MAX_PARALLEL

    def __init__(
        self,
        *,
        broadcast: bool = False,
        ttl: int = 24 * 3600,
        urgency: str | None = None,
        timeout: float | None = None,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        celery_task_name: str | None = None,
    ) -> None:
        if urgency not in (None, "very-low", "low", "normal", "high"):
            raise ValueError(
                f"urgency must be very-low, low, normal, high or None, not {urgency!r}"
            )
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
            raise ValueError(f"ttl must be an integer >= 0, not {ttl!r}")
        if isinstance(max_payload_bytes, bool) or not isinstance(max_payload_bytes, int):
            raise ValueError(f"max_payload_bytes must be an integer, not {max_payload_bytes!r}")
        if not 256 <= max_payload_bytes <= 3993:
            raise ValueError(f"max_payload_bytes must be 256 to 3993, not {max_payload_bytes}")
        self.broadcast = bool(broadcast)
        self.ttl = ttl
        self.urgency = urgency
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ValueError(f"timeout must be a number of seconds > 0 or None, not {timeout!r}")
        self.timeout = None if timeout is None else float(timeout)
        self.max_payload_bytes = max_payload_bytes
        self.celery_task_name = celery_task_name

    # -- what is sent ----------------------------------------------------------------

    def payload(self, event: Event) -> dict[str, Any]:
        """The JSON object pushed for ``event`` (before the size limit is applied).

        ``title``, ``body`` and ``timestamp`` are the event's; ``icon``,
        ``badge``, ``tag`` and ``client_action`` its custom fields of those
        names (when strings); ``url``, the page a click opens, its ``url``
        custom field, else its ``client_action`` when that is a URL (absolute
        ``http(s)``, or a path); ``data``, the event's ``event_id``,
        ``event_type``, ``sender`` and its other custom fields but ``channels``
        (which only steers the delivery). Recipients are never included.
        Override to change the format (the service worker reads the fields
        above).

        :param event: the event.
        """
        custom = event.custom_fields
        payload: dict[str, Any] = {
            "title": event["title"],
            "body": event["body"],
            "timestamp": event["timestamp"],
        }
        for name in ("icon", "badge", "tag", "client_action"):
            if isinstance(custom.get(name), str) and custom[name]:
                payload[name] = custom[name]
        url = safe_link(custom.get("url")) or safe_link(custom.get("client_action"))
        if url is not None:
            payload["url"] = url
        payload["data"] = push_data(event, skip=_TOP_LEVEL)
        return payload

    def encode_payload(self, event: Event) -> str:
        """The payload's JSON, at most :attr:`max_payload_bytes` UTF-8 bytes.

        When too large: ``data`` keeps only ``event_id``, ``event_type`` and
        ``sender``, and ``"truncated": true`` is added; then ``body``, then
        ``title``, are cut (ending with "…"); then ``badge``, ``tag``,
        ``client_action``, ``icon`` and ``url`` are dropped.

        :param event: the event.
        :raises InvalidEventError: if a custom field is not JSON-serialisable.
        """
        payload = self.payload(event)
        text = _dump(payload)
        limit = self.max_payload_bytes
        if _size(text) <= limit:
            return text
        data = payload.get("data")
        if isinstance(data, dict):
            payload["data"] = {
                k: data[k] for k in ("event_id", "event_type", "sender") if k in data
            }
        payload["truncated"] = True
        for field in ("body", "title"):
            text = _dump(payload)
            if _size(text) <= limit:
                return text
            value = payload.get(field)
            if isinstance(value, str) and value:
                payload[field] = self._cut(payload, field, value, limit)
        for field in _DROPPABLE:
            text = _dump(payload)
            if _size(text) <= limit:
                return text
            payload.pop(field, None)
        return _dump(payload)

    @staticmethod
    def _cut(payload: dict[str, Any], field: str, value: str, limit: int) -> str:
        """The longest prefix of ``value`` (+ "…") that fits, or ``""``."""
        low, high = 0, len(value)
        while low < high:  # the largest n whose cut fits
            mid = (low + high + 1) // 2
            if _size(_dump(dict(payload, **{field: value[:mid] + _ELLIPSIS}))) <= limit:
                low = mid
            else:
                high = mid - 1
        return value[:low] + _ELLIPSIS if low else ""

    # -- who gets it -----------------------------------------------------------------

    def subscriptions_for(self, event: Event) -> list[PushSubscription]:
        """The subscriptions to push ``event`` to: the recipients' (minus the
        ``webpush`` opt-outs); for a broadcast event, none, or every one
        (minus the opt-outs) when the consumer was made with ``broadcast=True``.

        :param event: the event.
        """
        store = get_state().extension.push_subscriptions
        if event["recipients"]:
            users = allowed_recipients(event, self.channel)
            return store.for_users(users) if users else []
        if not self.broadcast:
            return []
        subscriptions = store.all()
        if subscriptions and preferences_on(current_app):
            users = list(dict.fromkeys(s.recipient for s in subscriptions))
            allowed = set(get_state().extension.preferences.allowed_for(users, event, self.channel))
            subscriptions = [s for s in subscriptions if s.recipient in allowed]
        return subscriptions

    # -- sending ---------------------------------------------------------------------

    def consume(self, event: Event, *args: Any, **kwargs: Any) -> int:
        """Push ``event`` to its recipients' browsers.

        :param event: the event.
        :returns: how many pushes were accepted.
        :raises ConfigurationError: without VAPID keys or ``sub`` claim, or for
            a malformed ``NOTIFICATIONS_WEBPUSH_*`` setting.
        :raises PushServiceUnavailable: when some pushes should be retried.
        :raises PushRejected: when a push service refused a push for good.
        :raises InvalidQueryError: for a stored subscription that is invalid.
        """
        config = current_app.config
        vapid, _public_key, sub_claim = vapid_from_config(config)
        policy = EndpointPolicy.from_config(config)
        timeout = self.timeout if self.timeout is not None else timeout_from_config(config)
        subscriptions = self.subscriptions_for(event)
        if not subscriptions:
            return 0
        pusher = Pusher(
            data="",
            vapid=vapid,
            sub_claim=sub_claim,
            ttl=self.ttl,
            urgency=self.urgency,
            timeout=timeout,
            policy=policy,
            max_parallel=self.max_parallel,
        )
        task_name = self.task_name()
        event_id = event["event_id"]
        ttl = config["NOTIFICATIONS_DEDUP_TTL"]
        targets = {target_key(s.endpoint): s for s in subscriptions}
        done = reliability.delivered(task_name, event_id, list(targets))
        todo = [(key, s) for key, s in targets.items() if key not in done]
        store = get_state().extension.push_subscriptions
        failed: list[Exception] = []
        sent = 0
        payloads = self.localized_payloads(event, [s for _, s in todo])
        for (key, subscription), outcome in zip(
            todo, pusher.push_all([s for _, s in todo], payloads), strict=True
        ):
            if isinstance(outcome.error, PushEndpointRefused):
                logger.warning("%s; the subscription is deleted", outcome.error)
                store.delete_endpoint(subscription.endpoint)
            elif outcome.error is not None:
                failed.append(outcome.error)
                continue
            elif outcome.status in (404, 410):
                logger.info(
                    "push subscription %d of user %s is gone (%d); deleted",
                    subscription.id, printable(subscription.recipient, 80), outcome.status,
                )  # fmt: skip
                store.delete_endpoint(subscription.endpoint)
            else:
                sent += 1
                delivery_log.record(event_id, subscription.recipient, self.channel, "delivered")
            reliability.mark_delivered(task_name, event_id, key, ttl)
        self._raise_failures(failed, len(targets), event_id)
        return sent

    def localized_payloads(self, event: Event, subscriptions: list[PushSubscription]) -> list[str]:
        """The payload of each subscription, in its user's locale (see
        :doc:`/i18n`): encoded once per locale.

        :param event: the event.
        :param subscriptions: the subscriptions to push to.
        :returns: one payload per subscription, in their order.
        """
        encoded: dict[int, str] = {}
        for locale, group in by_locale(subscriptions, lambda s: s.recipient).items():
            with in_locale(locale):
                text = self.encode_payload(localize(event))
            for subscription in group:
                encoded[id(subscription)] = text
        return [encoded[id(s)] for s in subscriptions]

    @staticmethod
    def _raise_failures(failed: list[Exception], total: int, event_id: str) -> None:
        """Raise for the failed pushes: a configuration or unexpected error
        first (as is), then the transient failures (retried), then the
        permanent ones."""
        known = (PushServiceUnavailable, InvalidQueryError, PushRejected)
        for exc in failed:
            if not isinstance(exc, known):  # ConfigurationError included
                raise exc
        for kind in known:
            matching = [exc for exc in failed if isinstance(exc, kind)]
            if not matching:
                continue
            first = matching[0]
            if kind is PushServiceUnavailable:
                raise PushServiceUnavailable(
                    f"{len(matching)} of {total} push(es) of event {event_id} failed "
                    f"and will be retried; first: {first}"
                ) from first
            message = f"{len(matching)} of {total} push(es) of event {event_id} failed: {first}"
            raise kind(message) from first
