"""The browsers' Web Push subscriptions, stored next to the inbox."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import current_app

from ..errors import InvalidQueryError, PushSubscriptionConflict
from ..inbox._user_devices import _UserDevices, positive_int_setting
from ..inbox.models import push_subscriptions as table
from ..inbox.store import user_id
from ._ssrf import EndpointPolicy
from .keys import b64url_decode, b64url_encode

#: Longest accepted endpoint URL (push services use a few hundred characters).
MAX_ENDPOINT_LENGTH = 2048
MAX_SUBSCRIPTIONS = "NOTIFICATIONS_WEBPUSH_MAX_SUBSCRIPTIONS"
#: Default ``NOTIFICATIONS_WEBPUSH_MAX_SUBSCRIPTIONS``: browsers per user.
DEFAULT_MAX_SUBSCRIPTIONS = 10


def max_subscriptions(config: Mapping[str, Any]) -> int:
    """``NOTIFICATIONS_WEBPUSH_MAX_SUBSCRIPTIONS`` (default
    :data:`DEFAULT_MAX_SUBSCRIPTIONS`).

    :param config: the app's configuration.
    :raises ConfigurationError: unless it is an integer >= 1.
    """
    return positive_int_setting(config, MAX_SUBSCRIPTIONS, DEFAULT_MAX_SUBSCRIPTIONS)


@dataclass(frozen=True)
class PushSubscription:
    """One stored browser subscription."""

    #: The row's id.
    id: int
    #: The user it belongs to (a string, like events' recipients).
    recipient: str
    #: The push service URL the notifications are POSTed to.
    endpoint: str
    #: The browser's P-256 public key, base64url.
    p256dh: str
    #: The browser's 16-byte authentication secret, base64url.
    auth: str
    #: When it was stored (epoch seconds).
    created_at: float

    def info(self) -> dict[str, Any]:
        """The ``subscription_info`` form pywebpush takes (and
        ``PushSubscription.toJSON()`` gives): ``{"endpoint", "keys": {"p256dh", "auth"}}``."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def _check_point(point: bytes) -> bool:
    if len(point) != 65 or point[0] != 4:
        return False
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:  # pragma: no cover - without the webpush extra: length check only
        return True
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        return False
    return True


def parse_subscription(obj: object) -> dict[str, Any]:
    """Check the JSON of a browser's ``PushSubscription.toJSON()`` and return
    its normal form ``{"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}``
    (keys in base64url without padding; other members such as
    ``expirationTime`` are ignored).

    :param obj: the parsed JSON.
    :raises InvalidQueryError: naming the bad field: ``endpoint`` must be an
        ``http(s)`` URL of at most 2,048 characters, ``keys.p256dh`` must
        decode (base64url) to a 65-byte uncompressed P-256 point, and
        ``keys.auth`` to 16 bytes.
    """
    if not isinstance(obj, Mapping):
        raise InvalidQueryError("a push subscription must be a JSON object")
    endpoint = obj.get("endpoint")
    if not isinstance(endpoint, str) or len(endpoint) > MAX_ENDPOINT_LENGTH:
        raise InvalidQueryError(
            f"endpoint must be an http(s) URL of at most {MAX_ENDPOINT_LENGTH} characters"
        )
    try:
        parts = urlsplit(endpoint)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid or any(c.isspace() for c in endpoint):
        raise InvalidQueryError(f"endpoint must be an http(s) URL, not {endpoint[:80]!r}")
    keys = obj.get("keys")
    if not isinstance(keys, Mapping):
        raise InvalidQueryError("keys must be an object with p256dh and auth")
    try:
        point = b64url_decode(keys.get("p256dh"))  # type: ignore[arg-type]
    except ValueError:
        point = b""
    if not _check_point(point):
        raise InvalidQueryError(
            "keys.p256dh must be the base64url form of a 65-byte uncompressed P-256 point"
        )
    try:
        secret = b64url_decode(keys.get("auth"))  # type: ignore[arg-type]
    except ValueError:
        secret = b""
    if len(secret) != 16:
        raise InvalidQueryError("keys.auth must be the base64url form of 16 bytes")
    return {
        "endpoint": endpoint,
        "keys": {"p256dh": b64url_encode(point), "auth": b64url_encode(secret)},
    }


def _row(row: Any) -> PushSubscription:
    return PushSubscription(
        id=int(row.id),
        recipient=row.recipient,
        endpoint=row.endpoint,
        p256dh=row.p256dh,
        auth=row.auth,
        created_at=row.created_at,
    )


class PushSubscriptions(_UserDevices):
    """The browsers' Web Push subscriptions of the current app, in the inbox
    database (table ``flask_notification_push_subscriptions``).

    An endpoint is unique. Storing a subscription whose endpoint is known
    updates it: the same user's browser may renew its keys, and the endpoint
    moves to another user only with the same keys (the same browser, where
    someone else signed in); else :class:`PushSubscriptionConflict`. A user
    keeps at most ``NOTIFICATIONS_WEBPUSH_MAX_SUBSCRIPTIONS`` subscriptions:
    storing one more deletes the user's oldest.
    """

    _table = table
    _key = "endpoint"
    _order = "created_at"
    _evicted = "push subscriptions: deleted the oldest"
    _row = staticmethod(_row)

    def add(self, user: str | int, subscription: Mapping[str, Any]) -> tuple[int, bool]:
        """Store a browser's subscription for ``user`` (an upsert by endpoint),
        in an application context.

        The endpoint must pass the rules of
        :class:`~flask_notifications.webpush._ssrf.EndpointPolicy` (``https``,
        public addresses, ``NOTIFICATIONS_WEBPUSH_ALLOWED_HOSTS``), checked
        with the host resolved now. Beyond ``NOTIFICATIONS_WEBPUSH_MAX_SUBSCRIPTIONS``
        subscriptions of ``user``, the oldest ones (by when they were stored
        for this user) are deleted.

        :param user: the user it belongs to.
        :param subscription: the JSON of ``PushSubscription.toJSON()``.
        :returns: ``(id, created)``: ``created`` is ``False`` when the endpoint
            was known and its row was updated.
        :raises InvalidQueryError: for a bad user id or subscription (see
            :func:`parse_subscription`).
        :raises PushEndpointRefused: (an :class:`InvalidQueryError`) for an
            endpoint the rules refuse.
        :raises PushSubscriptionConflict: (an :class:`InvalidQueryError`) when
            the endpoint is another user's, with other keys.
        """
        recipient = user_id(user)
        sub = parse_subscription(subscription)
        endpoint = sub["endpoint"]
        config = current_app.config
        limit = max_subscriptions(config)
        EndpointPolicy.from_config(config).check(endpoint)
        keys = {"p256dh": sub["keys"]["p256dh"], "auth": sub["keys"]["auth"]}

        def known(found: Any) -> dict[str, Any]:
            values: dict[str, Any] = dict(keys)
            if found.recipient != recipient:
                if (found.p256dh, found.auth) != (keys["p256dh"], keys["auth"]):
                    raise PushSubscriptionConflict(
                        "this push endpoint is registered for another user with other "
                        "keys; subscribe this browser again to get a new endpoint"
                    )
                values.update(recipient=recipient, created_at=time.time())
            return values

        return self._upsert(
            recipient, endpoint, limit, ("p256dh", "auth"), known,
            lambda: {"created_at": time.time(), **keys},
            f"could not store the subscription of {endpoint[:80]!r}",
        )  # fmt: skip

    def remove(self, user: str | int, endpoint: str) -> bool:
        """Delete the user's subscription of ``endpoint``.

        :param user: the user (another user's subscription is left alone).
        :param endpoint: the subscription's endpoint.
        :returns: whether there was one.
        """
        recipient = user_id(user)
        if not isinstance(endpoint, str) or not endpoint:
            raise InvalidQueryError("endpoint must be a non-empty string")
        return self._remove(recipient, endpoint)

    def delete_endpoint(self, endpoint: str) -> bool:
        """Delete the subscription of ``endpoint``, whoever it belongs to (the
        push service answered that it is gone).

        :param endpoint: the subscription's endpoint.
        :returns: whether there was one.
        """
        return self._delete(endpoint)

    def for_users(self, users: Iterable[str | int]) -> list[PushSubscription]:
        """The subscriptions of ``users`` (every browser of each), by id.

        :param users: the users.
        """
        return self._for_users(users)

    def all(self) -> list[PushSubscription]:
        """Every subscription, by id (for broadcast events)."""
        return self._all()
