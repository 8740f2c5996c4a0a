"""The :class:`WebPushConsumer`: standard Web Push (VAPID) to the recipients' browsers."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from flask import current_app

from .. import reliability
from .._state import get_state
from ..errors import ConfigurationError, InvalidQueryError, PushRejected, PushServiceUnavailable
from ..event import Event
from ..webpush.keys import vapid_from_config
from ..webpush.store import PushSubscription, parse_subscription
from ._recipients import allowed_recipients, preferences_on
from .consumer import Consumer

if TYPE_CHECKING:
    import requests

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


def _safe_url(value: Any) -> str | None:
    """A URL the service worker may open: absolute http(s), or a path."""
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        return None
    if value.startswith(("https://", "http://")):
        return value
    if value.startswith("/") and not value.startswith("//"):
        return value
    return None


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

    - A 404 or 410 answer deletes the subscription (the browser unsubscribed).
    - A 5xx or 429 answer, or a push service out of reach, raises
      :class:`~flask_notifications.errors.PushServiceUnavailable`: the task
      retries (``retry_for``), and skips the subscriptions already served.
    - Any other 4xx answer raises :class:`~flask_notifications.errors.PushRejected`
      (after the other subscriptions were served): the task becomes a dead letter.

    ``consume`` returns how many notifications the push services accepted.

    :param broadcast: what to do with broadcast events (no recipients): by
        default nothing; with ``True``, push them to every subscription (minus
        the opt-outs).
    :param ttl: seconds a push service keeps a notification for a browser
        that is offline (the ``TTL`` header).
    :param urgency: the ``Urgency`` header: ``"very-low"``, ``"low"``,
        ``"normal"``, ``"high"`` or ``None`` (not sent: ``"normal"``).
    :param timeout: seconds to wait for a push service.
    :param max_payload_bytes: size limit of the JSON payload, in UTF-8 bytes.
    :param celery_task_name: the task name (see
        :attr:`~flask_notifications.consumers.consumer.Consumer.celery_task_name`).
    """

    #: The preferences channel this consumer honours.
    channel = "webpush"
    #: Transient failures, retried: the base class's and
    #: :class:`~flask_notifications.errors.PushServiceUnavailable`.
    retry_for: tuple[type[BaseException], ...] = (*Consumer.retry_for, PushServiceUnavailable)

    def __init__(
        self,
        *,
        broadcast: bool = False,
        ttl: int = 24 * 3600,
        urgency: str | None = None,
        timeout: float = 10.0,
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
        self.timeout = float(timeout)
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
        ``event_type``, ``sender`` and its other custom fields. Recipients are
        never included. Override to change the format (the service worker
        reads the fields above).

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
        url = _safe_url(custom.get("url")) or _safe_url(custom.get("client_action"))
        if url is not None:
            payload["url"] = url
        data = {
            "event_id": event["event_id"],
            "event_type": event["event_type"],
            "sender": event["sender"],
        }
        data.update((k, v) for k, v in custom.items() if k not in _TOP_LEVEL)
        payload["data"] = data
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
            allowed = set(
                get_state().extension.preferences.allowed(users, event["event_type"], self.channel)
            )
            subscriptions = [s for s in subscriptions if s.recipient in allowed]
        return subscriptions

    # -- sending ---------------------------------------------------------------------

    def consume(self, event: Event, *args: Any, **kwargs: Any) -> int:
        """Push ``event`` to its recipients' browsers.

        :param event: the event.
        :returns: how many pushes were accepted.
        :raises ConfigurationError: without VAPID keys or ``sub`` claim.
        :raises PushServiceUnavailable: when some pushes should be retried.
        :raises PushRejected: when a push service refused a push for good.
        :raises InvalidQueryError: for a stored subscription that is invalid.
        """
        vapid, _public_key, sub_claim = vapid_from_config(current_app.config)
        subscriptions = self.subscriptions_for(event)
        if not subscriptions:
            return 0
        data = self.encode_payload(event)
        task_name = self.task_name()
        event_id = event["event_id"]
        ttl = current_app.config["NOTIFICATIONS_DEDUP_TTL"]
        targets = {target_key(s.endpoint): s for s in subscriptions}
        done = reliability.delivered(task_name, event_id, list(targets))
        store = get_state().extension.push_subscriptions
        transient: list[Exception] = []
        permanent: list[Exception] = []
        sent = 0

        import requests

        with requests.Session() as session:
            for key, subscription in targets.items():
                if key in done:
                    continue
                try:
                    status = self._push(subscription, data, vapid, sub_claim, session)
                except PushServiceUnavailable as exc:
                    transient.append(exc)
                    continue
                except (PushRejected, InvalidQueryError) as exc:
                    permanent.append(exc)
                    continue
                if status in (404, 410):
                    logger.info(
                        "push subscription %d of user %s is gone (%d); deleted",
                        subscription.id, subscription.recipient, status,
                    )  # fmt: skip
                    store.delete_endpoint(subscription.endpoint)
                else:
                    sent += 1
                reliability.mark_delivered(task_name, event_id, key, ttl)
        if transient:
            raise PushServiceUnavailable(
                f"{len(transient)} of {len(targets)} push(es) of event {event_id} failed "
                f"and will be retried; first: {transient[0]}"
            ) from transient[0]
        if permanent:
            first = permanent[0]
            message = (
                f"{len(permanent)} of {len(targets)} push(es) of event {event_id} failed: {first}"
            )
            if isinstance(first, InvalidQueryError):
                raise InvalidQueryError(message) from first
            raise PushRejected(message) from first
        return sent

    def _push(
        self,
        subscription: PushSubscription,
        data: str,
        vapid: Any,
        sub_claim: str,
        session: requests.Session,
    ) -> int:
        """POST one push; the push service's status (2xx, 404 or 410), or raise."""
        import requests
        from py_vapid import VapidException
        from pywebpush import WebPushException, webpush

        try:
            info = parse_subscription(subscription.info())
        except InvalidQueryError as exc:
            raise InvalidQueryError(f"stored push subscription {subscription.id}: {exc}") from None
        origin = _origin(subscription.endpoint)
        headers = {"Urgency": self.urgency} if self.urgency else None
        try:
            response = webpush(
                info,
                data=data,
                vapid_private_key=vapid,
                vapid_claims={"sub": sub_claim},
                ttl=self.ttl,
                timeout=self.timeout,
                headers=headers,  # type: ignore[arg-type]
                requests_session=session,
            )
        except WebPushException as exc:
            status = exc.status_code
            text = ""
            if exc.response is not None:
                text = (getattr(exc.response, "text", "") or "")[:200]
            if status is not None and (200 <= status < 300 or status in (404, 410)):
                return int(status)  # pywebpush raises for any status above 202
            if status is not None and (status == 429 or status >= 500):
                raise PushServiceUnavailable(
                    f"push service {origin} answered {status} {text}".rstrip()
                ) from None
            raise PushRejected(
                f"push service {origin} refused the push to subscription {subscription.id} "
                f"(user {subscription.recipient}): {status} {text}".rstrip()
                + (
                    " - do the VAPID keys match the ones the browser subscribed with?"
                    if status in (401, 403)
                    else ""
                )
            ) from None
        except requests.RequestException as exc:
            raise PushServiceUnavailable(
                f"push service {origin} is out of reach: {type(exc).__name__}"
            ) from exc
        except VapidException as exc:
            raise ConfigurationError(f"VAPID signing failed for {origin}: {exc}") from None
        return int(getattr(response, "status_code", 201))


def _origin(endpoint: str) -> str:
    scheme, _, rest = endpoint.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"
