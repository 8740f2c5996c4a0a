"""The :class:`FCMConsumer`: native push to Android (and iOS) apps through
Firebase Cloud Messaging, HTTP v1 API."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import current_app

from .._state import get_state
from ..errors import ConfigurationError, PushRejected, PushServiceUnavailable
from ..event import Event
from ..i18n import localized_for
from ..mobile.store import Device
from ._badge import unread_badges
from ._device_batch import _DeviceBatch
from ._fcm_credentials import CREDENTIALS, Credentials
from ._mobile_consumer import _MobilePushConsumer
from ._push_http import retry_after, ssl_context
from ._recipients import mobile_devices, push_data

__all__ = ["DEFAULT_ENDPOINT", "ENDPOINT", "SCOPE", "FCMConsumer", "retry_after", "ssl_context",
           "target_key"]  # fmt: skip

logger = logging.getLogger("flask_notifications")

ENDPOINT = "NOTIFICATIONS_FCM_ENDPOINT"
#: Default ``NOTIFICATIONS_FCM_ENDPOINT``.
DEFAULT_ENDPOINT = "https://fcm.googleapis.com"
SCOPE = Credentials.scope
_SECONDS_CAP = 28 * 24 * 3600  # FCM keeps a message at most 4 weeks


def target_key(platform: str, token: str) -> str:
    """The short key of a device in the delivery records (a hash of its token).

    :param platform: the device's platform.
    :param token: its push token.
    """
    return hashlib.sha256(f"{platform}:{token}".encode("utf-8", "replace")).hexdigest()[:20]


def _strings(data: Mapping[str, Any]) -> dict[str, str]:
    """FCM's ``data``: a map of strings (others as compact JSON)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        if value is None:
            continue
        out[str(key)] = (
            value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        )
    return out


class FCMConsumer(_MobilePushConsumer):
    """Sends each event through Firebase Cloud Messaging (HTTP v1 API) to
    the stored devices (:attr:`notifications.devices
    <flask_notifications.Notifications.devices>`) of its recipients, except
    those who opted out of the event type on the ``mobile`` channel. Needs
    ``google-auth`` and ``httpx`` (``pip install 'Flask-Notifications[mobile]'``).

    Settings: ``NOTIFICATIONS_FCM_CREDENTIALS``, the path of the Firebase
    project's service account JSON key (the project id is read from it, the
    access token obtained from its ``token_uri``), and
    ``NOTIFICATIONS_FCM_ENDPOINT`` (default ``https://fcm.googleapis.com``).
    TLS is always verified; ``SSL_CERT_FILE`` and ``REQUESTS_CA_BUNDLE`` add a CA.

    - ``404`` or an ``UNREGISTERED`` error deletes the device;
    - ``401`` (the access token was revoked): a new token is fetched from
      the key's ``token_uri`` and those messages are sent again at once,
      once per attempt; refused again, they raise
      :class:`~flask_notifications.errors.PushServiceUnavailable` (retried
      with a new token each time, then a dead letter);
    - ``429`` and ``5xx`` raise
      :class:`~flask_notifications.errors.PushServiceUnavailable` (retried,
      no sooner than the ``Retry-After`` answered), skipping the devices
      already served;
    - any other answer raises :class:`~flask_notifications.errors.PushRejected`
      naming FCM's reason (a dead letter).

    :param platforms: the platforms of the devices it sends to (``"android"``,
        ``"ios"``); with :class:`APNsConsumer` for iOS, ``("android",)``.
    :param broadcast: push broadcast events (no recipients) to every device.
    :param timeout: seconds one request may take.
    :param celery_task_name: the task name.
    """

    #: How many requests of one event are sent at once.
    max_parallel: int = 10

    def __init__(
        self,
        *,
        platforms: tuple[str, ...] = ("android", "ios"),
        broadcast: bool = False,
        timeout: float = 10.0,
        celery_task_name: str | None = None,
    ) -> None:
        if not platforms or any(p not in ("android", "ios") for p in platforms):
            raise ValueError(f"platforms must be some of android, ios, not {platforms!r}")
        super().__init__(broadcast=broadcast, timeout=timeout, celery_task_name=celery_task_name)
        self.platforms = tuple(platforms)
        self._keys: dict[str, Credentials] = {}
        self._keys_lock = threading.Lock()

    # -- what is sent ----------------------------------------------------------------

    def message(self, event: Event, device: Device, badge: int | None = None) -> dict[str, Any]:
        """The v1 ``message`` sent to ``device`` for ``event``.

        ``notification``: the event's title and body, and its ``image`` (or
        ``icon``) custom field; ``data``: ``event_id``, ``event_type``,
        ``sender`` and the other custom fields but ``channels``, as strings;
        the ``group`` (or
        ``thread``) custom field gives the Android ``collapse_key`` and the
        APNs ``thread-id``; ``expiration_datetime`` the ``ttl``; ``sound``
        and ``priority`` (``"high"``/``"normal"``: Android ``HIGH``/``NORMAL``,
        default ``NORMAL``; ``apns-priority`` ``10``/``5``, default ``10``)
        their custom fields.

        ``badge`` (the event's ``badge`` custom field when an integer, else
        the given one) is ``aps.badge`` and Android's ``notification_count``.

        :param event: the event.
        :param device: the device.
        :param badge: the recipient's unread count, when the hub stores to the inbox.
        """
        custom = event.custom_fields
        if isinstance(custom.get("badge"), int) and not isinstance(custom["badge"], bool):
            badge = custom["badge"]
        notification: dict[str, str] = {"title": event["title"], "body": event["body"]}
        image = custom.get("image") or custom.get("icon")
        if isinstance(image, str) and image.startswith("https://"):
            notification["image"] = image
        message: dict[str, Any] = {
            "token": device.token,
            "notification": notification,
            "data": _strings(push_data(event)),
        }
        group = custom.get("group") or custom.get("thread")
        sound = custom.get("sound")
        high = custom.get("priority") == "high"
        android: dict[str, Any] = {"priority": "HIGH" if high else "NORMAL"}
        aps: dict[str, Any] = {}
        apns_headers = {"apns-priority": "5" if custom.get("priority") == "normal" else "10"}
        if isinstance(group, str) and group:
            android["collapse_key"] = group[:64]
            aps["thread-id"] = group
            apns_headers["apns-collapse-id"] = group[:64]
        if isinstance(sound, str) and sound:
            android["notification"] = {"sound": sound}
            aps["sound"] = sound
        if badge is not None and badge >= 0:
            aps["badge"] = badge
            android.setdefault("notification", {})["notification_count"] = badge
        expiration = event.get("expiration_datetime")
        if expiration is not None:
            seconds = int(max(0, min(_SECONDS_CAP, expiration.timestamp() - time.time())))
            android["ttl"] = f"{seconds}s"
            apns_headers["apns-expiration"] = str(int(expiration.timestamp()))
        message["android"] = android
        message["apns"] = {"headers": apns_headers, "payload": {"aps": aps}}
        return message

    # -- who gets it -----------------------------------------------------------------

    def devices_for(self, event: Event) -> list[Device]:
        """The devices to send ``event`` to (of :attr:`platforms`): the
        recipients' minus the ``mobile`` opt-outs; for a broadcast event none,
        or every device when made with ``broadcast=True``.

        :param event: the event.
        """
        return mobile_devices(event, self.channel, self.broadcast, self.platforms)

    # -- sending ---------------------------------------------------------------------

    def _credentials(self, config: Mapping[str, Any]) -> Credentials:
        path = config.get(CREDENTIALS)
        if not isinstance(path, str | os.PathLike) or not str(path):
            raise ConfigurationError(f"{CREDENTIALS} must be the path of a service account key")
        path = str(path)
        with self._keys_lock:
            key = self._keys.get(path)
            if key is None:
                key = self._keys[path] = Credentials(path)
            return key

    def consume(self, event: Event, *args: Any, **kwargs: Any) -> int:
        """Send ``event`` to its recipients' devices.

        :param event: the event.
        :returns: how many messages FCM accepted.
        :raises ConfigurationError: for a missing or bad setting.
        :raises PushServiceUnavailable: when some messages should be retried.
        :raises PushRejected: when FCM refused a message for good.
        """
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - without the mobile extra
            raise ConfigurationError(
                "FCMConsumer needs httpx: pip install 'Flask-Notifications[mobile]'"
            ) from exc
        config = current_app.config
        key = self._credentials(config)
        endpoint = str(config.get(ENDPOINT) or DEFAULT_ENDPOINT).rstrip("/")
        if not endpoint.startswith("https://"):
            raise ConfigurationError(f"{ENDPOINT} must be an https URL, not {endpoint!r}")
        devices = self.devices_for(event)
        if not devices:
            return 0
        targets = {target_key(d.platform, d.token): d for d in devices}
        batch = _DeviceBatch(self, event, targets, "FCM message(s)")
        todo = batch.todo
        if not todo:
            return 0
        token = key.token(self.timeout)
        url = f"{endpoint}/v1/projects/{key.project_id}/messages:send"
        store = get_state().extension.devices
        badges = unread_badges(self, event, [d.recipient for _, d in todo])
        texts = localized_for(event, [d.recipient for _, d in todo])  # per locale

        def send_all(devices: list[Device], token: str) -> list[Any]:
            headers = {"Authorization": f"Bearer {token}"}

            def send(device: Device) -> Any:
                badge = badges.get(device.recipient)
                body = {"message": self.message(texts[device.recipient], device, badge)}
                try:
                    return client.post(url, json=body, headers=headers)
                except httpx.HTTPError as exc:
                    return exc

            workers = max(1, min(self.max_parallel, len(devices)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(send, devices))

        with httpx.Client(verify=ssl_context(), timeout=self.timeout, trust_env=False) as client:
            outcomes = send_all([d for _, d in todo], token)
            # 401: the access token was revoked or expired early. Fetch a new
            # one (once per call) and send those again at once; a second 401
            # with the fresh token is retried with the task (see below).
            again = [i for i, o in enumerate(outcomes) if getattr(o, "status_code", 0) == 401]
            unauthorized = ""
            if again:
                try:
                    token = key.token(self.timeout, stale=token)
                except (PushServiceUnavailable, PushRejected) as exc:
                    # Those sent are recorded below before this is raised.
                    unauthorized = f"and the token endpoint failed: {exc}"
                else:
                    unauthorized = "to a freshly issued access token"
                    fresh = send_all([todo[i][1] for i in again], token)
                    for i, outcome in zip(again, fresh, strict=True):
                        outcomes[i] = outcome
        for (k, device), outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, Exception):
                batch.retry(f"FCM is unreachable: {outcome}")
                continue
            status = outcome.status_code
            reason = _reason(outcome)
            if 200 <= status < 300:
                batch.delivered(k, device)
            elif status == 404 or "UNREGISTERED" in reason:
                logger.info(
                    "device %d is no longer registered at FCM (%d); deleted", device.id, status
                )
                store.delete_token(device.token)
                batch.done(k)
            elif status == 401:
                # Refused again with a token just issued (or none could be
                # had): retried with the task, which fetches another, and a
                # dead letter naming it once the retries are spent.
                batch.retry(f"FCM answered 401 {reason} {unauthorized}")
            elif status == 429 or status >= 500:
                wait = retry_after(outcome.headers.get("Retry-After"))
                batch.retry(f"FCM answered {status} {reason}", wait)
            else:
                batch.refused(k, f"FCM answered {status} {reason}")
        return batch.finish()


def _reason(response: Any) -> str:
    """FCM's error status and details (``INVALID_ARGUMENT``, ``UNREGISTERED``...)."""
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return ""
    parts = [str(error.get("status") or "")]
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            parts.append(str(detail["errorCode"]))
    if error.get("message"):
        parts.append(f"({str(error['message'])[:200]})")
    return " ".join(p for p in parts if p)
