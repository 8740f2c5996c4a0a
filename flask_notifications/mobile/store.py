"""The native apps' push tokens (APNs and FCM), stored next to the inbox."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app

from ..errors import InvalidQueryError
from ..inbox._user_devices import _UserDevices, positive_int_setting
from ..inbox.models import mobile_devices as table
from ..inbox.store import user_id

logger = logging.getLogger("flask_notifications")

#: The platforms a device may have: ``ios`` (APNs) and ``android`` (FCM).
PLATFORMS = ("ios", "android")
#: Longest accepted token (APNs tokens are 64 hex digits, FCM tokens a few
#: hundred characters).
MAX_TOKEN_LENGTH = 2048
MAX_DEVICES = "NOTIFICATIONS_MOBILE_MAX_DEVICES"
#: Default ``NOTIFICATIONS_MOBILE_MAX_DEVICES``: devices per user.
DEFAULT_MAX_DEVICES = 10


def max_devices(config: Mapping[str, Any]) -> int:
    """``NOTIFICATIONS_MOBILE_MAX_DEVICES`` (default :data:`DEFAULT_MAX_DEVICES`).

    :param config: the app's configuration.
    :raises ConfigurationError: unless it is an integer >= 1.
    """
    return positive_int_setting(config, MAX_DEVICES, DEFAULT_MAX_DEVICES)


def _check_token(token: object) -> str:
    if (
        not isinstance(token, str)
        or not 0 < len(token) <= MAX_TOKEN_LENGTH
        or not all("!" <= c <= "~" for c in token)
    ):
        raise InvalidQueryError(
            f"token must be a string of 1 to {MAX_TOKEN_LENGTH} printable ASCII characters "
            "without spaces"
        )
    return token


def parse_device(obj: object) -> dict[str, str]:
    """Check the JSON an app registers its device with,
    ``{"platform": "ios" | "android", "token": "..."}``, and return
    ``{"platform", "token"}`` (other members are ignored).

    :param obj: the parsed JSON.
    :raises InvalidQueryError: naming the bad field.
    """
    if not isinstance(obj, Mapping):
        raise InvalidQueryError("a device must be a JSON object with platform and token")
    platform = obj.get("platform")
    if platform not in PLATFORMS:
        raise InvalidQueryError(f"platform must be one of {', '.join(PLATFORMS)}")
    return {"platform": platform, "token": _check_token(obj.get("token"))}


@dataclass(frozen=True)
class Device:
    """One stored device."""

    #: The row's id.
    id: int
    #: The user it belongs to (a string, like events' recipients).
    recipient: str
    #: ``"ios"`` or ``"android"``.
    platform: str
    #: The push token (APNs device token or FCM registration token).
    token: str
    #: When it was last registered (epoch seconds).
    registered_at: float

    def info(self) -> dict[str, Any]:
        """``{"id", "platform", "token"}``, as the HTTP API answers."""
        return {"id": self.id, "platform": self.platform, "token": self.token}


def _row(row: Any) -> Device:
    return Device(
        id=int(row.id),
        recipient=row.recipient,
        platform=row.platform,
        token=row.token,
        registered_at=row.registered_at,
    )


class Devices(_UserDevices):
    """The native apps' devices of the current app, in the inbox database
    (table ``flask_notification_mobile_devices``).

    A token is unique. Registering a known token updates its row: its
    platform and when it was registered. **A token moves to another user only
    when that user registers it** (the app, signed in as that user, sends it
    again, as apps do at each launch and sign-in); nothing else moves it: a
    user cannot delete or read another user's device. A user keeps at most
    ``NOTIFICATIONS_MOBILE_MAX_DEVICES`` devices: registering one more deletes
    the user's least recently registered.
    """

    _table = table
    _key = "token"
    _order = "registered_at"
    _evicted = "devices: deleted the least recently registered"
    _row = staticmethod(_row)

    def add(self, user: str | int, device: Mapping[str, Any]) -> tuple[int, bool]:
        """Register a device for ``user`` (an upsert by token), in an
        application context.

        :param user: the user it belongs to.
        :param device: ``{"platform": "ios" | "android", "token": "..."}``.
        :returns: ``(id, created)``: ``created`` is ``False`` when the token
            was known and its row was updated (and moved to ``user``).
        :raises InvalidQueryError: for a bad user id or device (see
            :func:`parse_device`).
        """
        recipient = user_id(user)
        dev = parse_device(device)
        values = {"recipient": recipient, "platform": dev["platform"]}

        def known(found: Any) -> dict[str, Any]:
            if found.recipient != recipient:
                logger.info(
                    "device %s moved from user %s to user %s, who registered it",
                    found.id, found.recipient, recipient,
                )  # fmt: skip
            return {**values, "registered_at": time.time()}

        return self._upsert(
            recipient, dev["token"], max_devices(current_app.config), (), known,
            lambda: {"platform": dev["platform"], "registered_at": time.time()},
            "could not store the device",
        )  # fmt: skip

    def remove(self, user: str | int, token: str) -> bool:
        """Delete the user's device with ``token`` (the app signs out).

        :param user: the user (another user's device is left alone).
        :param token: the device's token.
        :returns: whether there was one.
        """
        recipient = user_id(user)
        return self._remove(recipient, _check_token(token))

    def delete_token(self, token: str) -> bool:
        """Delete the device with ``token``, whoever it belongs to (APNs or
        FCM answered that the token is no longer valid).

        :param token: the device's token.
        :returns: whether there was one.
        """
        return self._delete(token)

    def for_user(self, user: str | int) -> list[Device]:
        """The devices of ``user``, by id.

        :param user: the user.
        """
        return self.for_users([user])

    def for_users(self, users: Iterable[str | int]) -> list[Device]:
        """The devices of ``users`` (every device of each), by id.

        :param users: the users.
        """
        return self._for_users(users)

    def all(self) -> list[Device]:
        """Every device, by id (for broadcast events)."""
        return self._all()
