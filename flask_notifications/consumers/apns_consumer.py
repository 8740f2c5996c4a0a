"""The :class:`APNsConsumer`: native push to iOS apps through Apple's APNs,
over HTTP/2 with token-based (``.p8`` key, ES256 JWT) authentication."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import current_app

from .._state import get_state
from ..errors import ConfigurationError
from ..event import Event
from ..i18n import localized_for
from ..mobile.store import Device
from ._badge import unread_badges
from ._device_batch import _DeviceBatch
from ._mobile_consumer import _MobilePushConsumer
from ._recipients import mobile_devices, push_data
from .fcm_consumer import retry_after, ssl_context

logger = logging.getLogger("flask_notifications")

#: APNs' production and development endpoints.
PRODUCTION = "https://api.push.apple.com"
SANDBOX = "https://api.sandbox.push.apple.com"
_TOKEN_LIFETIME = (
    50 * 60
)  # APNs accepts a token for 1 hour, refused if renewed more than every 20 min
#: Reasons that mean the token is no longer valid: the device is deleted.
GONE_REASONS = ("BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic")


def target_key(token: str) -> str:
    """The short key of a device in the delivery records.

    :param token: the device token.
    """
    return hashlib.sha256(f"apns:{token}".encode("utf-8", "replace")).hexdigest()[:20]


def _settings(config: Mapping[str, Any]) -> dict[str, Any]:
    names = ("KEY_FILE", "KEY_ID", "TEAM_ID", "TOPIC")
    values = {n: config.get(f"NOTIFICATIONS_APNS_{n}") for n in names}
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"NOTIFICATIONS_APNS_{name} must be set for APNsConsumer")
    endpoint = config.get("NOTIFICATIONS_APNS_ENDPOINT") or (
        SANDBOX if config.get("NOTIFICATIONS_APNS_SANDBOX") else PRODUCTION
    )
    if not str(endpoint).startswith("https://"):
        raise ConfigurationError(
            f"NOTIFICATIONS_APNS_ENDPOINT must be an https URL, not {endpoint!r}"
        )
    values["ENDPOINT"] = str(endpoint).rstrip("/")
    return values


class APNsConsumer(_MobilePushConsumer):
    """Sends each event to the iOS devices (platform ``"ios"``) of its
    recipients through APNs over HTTP/2 (one connection, the requests
    multiplexed), authenticated with a provider token signed by the ``.p8``
    key (ES256). Honours the ``mobile`` channel. Needs ``h2`` and ``PyJWT``
    (``pip install 'Flask-Notifications[mobile]'``).

    Settings: ``NOTIFICATIONS_APNS_KEY_FILE``, ``NOTIFICATIONS_APNS_KEY_ID``,
    ``NOTIFICATIONS_APNS_TEAM_ID``, ``NOTIFICATIONS_APNS_TOPIC`` (the app's
    bundle id), ``NOTIFICATIONS_APNS_SANDBOX`` (the development endpoint) and
    ``NOTIFICATIONS_APNS_ENDPOINT`` (another endpoint).

    - ``410``, or ``400`` with ``BadDeviceToken``: the device is deleted;
    - ``429`` and ``5xx``: retried (no sooner than ``Retry-After``);
    - other answers: a dead letter naming APNs' reason;
    - a GOAWAY from APNs: the requests above its last-stream-id (not
      processed) are sent again at once on a new connection; those at or
      below it keep their answers (read after the GOAWAY); a connection
      lost without one, or no answer in ``timeout``: retried with the task.

    :param broadcast: push broadcast events to every iOS device.
    :param timeout: seconds one request may take.
    :param celery_task_name: the task name.
    """

    #: How many requests of one event are in flight at once (on one connection).
    max_parallel: int = 100

    def __init__(
        self,
        *,
        broadcast: bool = False,
        timeout: float = 10.0,
        celery_task_name: str | None = None,
    ) -> None:
        super().__init__(broadcast=broadcast, timeout=timeout, celery_task_name=celery_task_name)
        self._token: tuple[tuple[str, str, str], str, float] | None = None
        self._lock = threading.Lock()

    def provider_token(self, key_file: str, key_id: str, team_id: str) -> str:
        """The ES256 JWT (``iss`` the team, ``iat`` now, header ``kid``),
        reused for 50 minutes.

        :raises ConfigurationError: when the key cannot be read.
        """
        try:
            import jwt
        except ImportError as exc:  # pragma: no cover - without the mobile extra
            raise ConfigurationError(
                "APNsConsumer needs PyJWT: pip install 'Flask-Notifications[mobile]'"
            ) from exc
        ident = (key_file, key_id, team_id)
        with self._lock:
            now = time.time()
            if self._token is not None and self._token[0] == ident and now < self._token[2]:
                return self._token[1]
            try:
                with open(key_file, encoding="utf-8") as f:
                    key = f.read()
                token = jwt.encode(
                    {"iss": team_id, "iat": int(now)}, key, algorithm="ES256",
                    headers={"kid": key_id},
                )  # fmt: skip
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise ConfigurationError(
                    f"NOTIFICATIONS_APNS_KEY_FILE must be an APNs .p8 key: {exc}"
                ) from exc
            self._token = (ident, token, now + _TOKEN_LIFETIME)
            return token

    def request(
        self, event: Event, device: Device, badge: int | None = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """The headers (beside ``authorization`` and ``apns-topic``) and the
        JSON payload sent to ``device`` for ``event``.

        ``aps.badge`` is the event's ``badge`` custom field when an integer,
        else ``badge``.

        :param event: the event.
        :param device: the device.
        :param badge: the recipient's unread count, when the hub stores to the inbox.
        """
        custom = event.custom_fields
        aps: dict[str, Any] = {"alert": {"title": event["title"], "body": event["body"]}}
        headers = {"apns-push-type": "alert"}
        high = custom.get("priority") != "normal"
        headers["apns-priority"] = "10" if high else "5"
        group = custom.get("group") or custom.get("thread")
        if isinstance(group, str) and group:
            aps["thread-id"] = group
            headers["apns-collapse-id"] = group[:64]
        sound = custom.get("sound")
        if isinstance(sound, str) and sound:
            aps["sound"] = sound
        image = custom.get("image") or custom.get("icon")
        if isinstance(image, str) and image.startswith("https://"):
            # APNs carries no image: the app's notification service extension
            # (woken by mutable-content) fetches ``data.image`` and attaches it
            aps["mutable-content"] = 1
        if isinstance(custom.get("badge"), int) and not isinstance(custom["badge"], bool):
            badge = custom["badge"]
        if badge is not None and badge >= 0:
            aps["badge"] = badge
        expiration = event.get("expiration_datetime")
        if expiration is not None:
            headers["apns-expiration"] = str(int(expiration.timestamp()))
        payload: dict[str, Any] = {"aps": aps}
        payload["data"] = push_data(event, skip=("badge", "sound"))
        return headers, payload

    def devices_for(self, event: Event) -> list[Device]:
        """The iOS devices to send ``event`` to (see :meth:`FCMConsumer.devices_for
        <flask_notifications.consumers.FCMConsumer.devices_for>`).

        :param event: the event.
        """
        return mobile_devices(event, self.channel, self.broadcast, ("ios",))

    def consume(self, event: Event, *args: Any, **kwargs: Any) -> int:
        """Send ``event`` to its recipients' iOS devices.

        :returns: how many notifications APNs accepted.
        :raises ConfigurationError: for a missing or bad setting.
        :raises PushServiceUnavailable: when some should be retried.
        :raises PushRejected: when APNs refused one for good.
        """
        try:
            import h2.exceptions

            from ._h2_client import H2Client, Unprocessed
        except ImportError as exc:  # pragma: no cover - without the mobile extra
            raise ConfigurationError(
                "APNsConsumer needs h2: pip install 'Flask-Notifications[mobile]'"
            ) from exc
        config = current_app.config
        settings = _settings(config)
        devices = self.devices_for(event)
        if not devices:
            return 0
        token = self.provider_token(settings["KEY_FILE"], settings["KEY_ID"], settings["TEAM_ID"])
        batch = _DeviceBatch(
            self, event, {target_key(d.token): d for d in devices}, "APNs notification(s)"
        )
        todo = batch.todo
        if not todo:
            return 0
        base = {"authorization": f"bearer {token}", "apns-topic": settings["TOPIC"]}

        badges = unread_badges(self, event, [d.recipient for _, d in todo])
        texts = localized_for(event, [d.recipient for _, d in todo])  # per locale

        async def send_all() -> list[Any]:
            client = H2Client(settings["ENDPOINT"], ssl_context(), self.timeout)
            limit = asyncio.Semaphore(max(1, self.max_parallel))

            async def send(device: Device) -> Any:
                badge = badges.get(device.recipient)
                headers, payload = self.request(texts[device.recipient], device, badge)
                content = json.dumps(payload, separators=(",", ":")).encode()
                async with limit:
                    try:
                        return await client.post(
                            f"/3/device/{device.token}", {**base, **headers}, content
                        )
                    except (OSError, Unprocessed, h2.exceptions.ProtocolError) as exc:
                        return exc

            try:
                return await asyncio.gather(*(send(d) for _, d in todo))
            finally:
                await client.close()

        outcomes = asyncio.run(send_all())
        store = get_state().extension.devices
        for (k, device), outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, Exception):
                batch.retry(f"APNs is unreachable: {type(outcome).__name__} {outcome}")
                continue
            status = outcome.status
            try:
                reason = str(json.loads(outcome.body).get("reason") or "")
            except (ValueError, AttributeError):
                reason = ""
            if status == 200:
                batch.delivered(k, device)
            elif status == 410 or reason in GONE_REASONS:
                logger.info("device %d is no longer valid at APNs (%d %s); deleted",
                            device.id, status, reason)  # fmt: skip
                store.delete_token(device.token)
                batch.done(k)
            elif status == 429 or status >= 500:
                wait = retry_after(outcome.headers.get("retry-after"))
                batch.retry(f"APNs answered {status} {reason}", wait)
            else:
                batch.refused(k, f"APNs answered {status} {reason}")
        return batch.finish()
