"""Configuration: every ``NOTIFICATIONS_*`` key, its default and its check.

:func:`apply_defaults` runs in :meth:`Notifications.init_app
<flask_notifications.Notifications.init_app>`: it sets each key with
``config.setdefault`` and rejects numbers out of range with a
:class:`~flask_notifications.errors.ConfigurationError` that names the key.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, MutableMapping
from typing import Any

from werkzeug.utils import ImportStringError, import_string

from .errors import ConfigurationError, InvalidEventError
from .event import DEFAULT_MAX_EVENT_BYTES, check_category
from .pubsub.backend import Backend
from .pubsub.redis_pubsub import DEFAULT_HISTORY_MAXLEN

#: The default backend, as the documentation's ``BACKEND`` key names it.
DEFAULT_BACKEND = "flask_notifications.pubsub.redis_pubsub.RedisPubSub"
_DEFAULT_REDIS_URL = "redis://localhost:6379/0"
#: Defaults of the keys that do not derive from another one.
DEFAULTS: dict[str, Any] = {
    "NOTIFICATIONS_MAX_EVENT_BYTES": DEFAULT_MAX_EVENT_BYTES,
    "NOTIFICATIONS_URL_PREFIX": "/notifications",
    "NOTIFICATIONS_REGISTER_BLUEPRINT": True,
    "NOTIFICATIONS_HISTORY_MAXLEN": DEFAULT_HISTORY_MAXLEN,
    "NOTIFICATIONS_HEARTBEAT": 15,
    "NOTIFICATIONS_STREAM_QUEUE": 1000,
    "NOTIFICATIONS_STREAM_RETRY": 2000,
    "NOTIFICATIONS_STREAM_DIRECT": True,
    "NOTIFICATIONS_REDIS_MAX_CONNECTIONS": 50,
    "NOTIFICATIONS_REDIS_POOL_TIMEOUT": 10,
    # None: 1 behind Sentinel, else 0 (see _redis.replica_wait).
    "NOTIFICATIONS_REDIS_WAIT_REPLICAS": None,
    "NOTIFICATIONS_REDIS_WAIT_TIMEOUT": 0.5,
    "NOTIFICATIONS_DATABASE_URI": None,
    "NOTIFICATIONS_INBOX_MAX_PER_PAGE": 100,
    "NOTIFICATIONS_INBOX_HUB": None,
    "NOTIFICATIONS_PREFERENCES": None,
    "NOTIFICATIONS_CRITICAL_CATEGORIES": ("security",),
    "NOTIFICATIONS_CATEGORIES": None,
    "NOTIFICATIONS_DEDUP_TTL": 24 * 3600,
    "NOTIFICATIONS_SEND_TIMEOUT": 5,
    "NOTIFICATIONS_REDELIVER_AFTER": 600,
    "NOTIFICATIONS_REDIS_PREFIX": "flask_notifications",
    "NOTIFICATIONS_MAX_BODY_BYTES": 64 * 1024,
    "NOTIFICATIONS_REPLAY_MAX": 1000,
    "NOTIFICATIONS_DEAD_LETTERS_MAX": 10_000,
    "NOTIFICATIONS_DELIVERY_LOG": True,
    "NOTIFICATIONS_DELIVERY_LOG_TTL": 7 * 24 * 3600,
    # None: on when NOTIFICATIONS_METRICS_ENDPOINT is set (see metrics.enabled).
    "NOTIFICATIONS_METRICS": None,
    "NOTIFICATIONS_METRICS_ENDPOINT": None,
    "NOTIFICATIONS_MODEL_OUTBOX": True,
    "NOTIFICATIONS_MODEL_OUTBOX_AFTER": 30,
    "NOTIFICATIONS_TIMER_POLL": 0.5,
    "NOTIFICATIONS_TIMER_LEASE": 30,
    "NOTIFICATIONS_TIMER_MAX_ATTEMPTS": 5,
    "NOTIFICATIONS_TIMER_RETRY_BACKOFF": 1.0,
    "NOTIFICATIONS_MAX_STREAMS": 25_000,
    "NOTIFICATIONS_STREAMS_PER_USER": 100,
    "NOTIFICATIONS_STREAMS_PER_ADDRESS": 10_000,
    "NOTIFICATIONS_VAPID_PRIVATE_KEY": None,
    "NOTIFICATIONS_VAPID_PUBLIC_KEY": None,
    "NOTIFICATIONS_VAPID_CLAIMS_SUB": None,
    "NOTIFICATIONS_WEBPUSH_ALLOWED_HOSTS": None,
    "NOTIFICATIONS_WEBPUSH_ALLOWED_NETWORKS": None,
    "NOTIFICATIONS_WEBPUSH_MAX_SUBSCRIPTIONS": 10,
    "NOTIFICATIONS_WEBPUSH_TIMEOUT": 5.0,
    "NOTIFICATIONS_MOBILE_MAX_DEVICES": 10,
    "NOTIFICATIONS_FCM_CREDENTIALS": None,
    "NOTIFICATIONS_FCM_ENDPOINT": "https://fcm.googleapis.com",
    "NOTIFICATIONS_APNS_KEY_FILE": None,
    "NOTIFICATIONS_APNS_KEY_ID": None,
    "NOTIFICATIONS_APNS_TEAM_ID": None,
    "NOTIFICATIONS_APNS_TOPIC": None,
    "NOTIFICATIONS_APNS_SANDBOX": False,
    "NOTIFICATIONS_APNS_ENDPOINT": None,
    # None: Flask-Babel's BABEL_DEFAULT_LOCALE, else "en" (see i18n.default_locale).
    "NOTIFICATIONS_DEFAULT_LOCALE": None,
    "NOTIFICATIONS_GROUP_ACTORS": 3,
    "NOTIFICATIONS_THROTTLE_SUMMARY_EVENTS": 50,
}
# key -> (type, smallest value)
_NUMBERS: dict[str, tuple[type, float]] = {
    "NOTIFICATIONS_MAX_EVENT_BYTES": (int, 256),
    "NOTIFICATIONS_HISTORY_MAXLEN": (int, 1),
    "NOTIFICATIONS_HEARTBEAT": (float, 0.01),
    "NOTIFICATIONS_STREAM_QUEUE": (int, 1),
    "NOTIFICATIONS_STREAM_RETRY": (int, 0),
    "NOTIFICATIONS_REDIS_MAX_CONNECTIONS": (int, 2),
    "NOTIFICATIONS_REDIS_POOL_TIMEOUT": (float, 0.01),
    "NOTIFICATIONS_REDIS_WAIT_TIMEOUT": (float, 0.001),
    "NOTIFICATIONS_INBOX_MAX_PER_PAGE": (int, 1),
    "NOTIFICATIONS_DEDUP_TTL": (int, 1),
    "NOTIFICATIONS_SEND_TIMEOUT": (float, 0),
    "NOTIFICATIONS_REDELIVER_AFTER": (float, 0.5),
    "NOTIFICATIONS_MAX_STREAMS": (int, 1),
    "NOTIFICATIONS_MAX_BODY_BYTES": (int, 1024),
    "NOTIFICATIONS_REPLAY_MAX": (int, 1),
    "NOTIFICATIONS_DEAD_LETTERS_MAX": (int, 1),
    "NOTIFICATIONS_DELIVERY_LOG_TTL": (int, 1),
    "NOTIFICATIONS_MODEL_OUTBOX_AFTER": (float, 0),
    "NOTIFICATIONS_TIMER_POLL": (float, 0.01),
    "NOTIFICATIONS_TIMER_LEASE": (float, 0.1),
    "NOTIFICATIONS_TIMER_MAX_ATTEMPTS": (int, 1),
    "NOTIFICATIONS_TIMER_RETRY_BACKOFF": (float, 0),
    "NOTIFICATIONS_WEBPUSH_MAX_SUBSCRIPTIONS": (int, 1),
    "NOTIFICATIONS_WEBPUSH_TIMEOUT": (float, 0.001),
    "NOTIFICATIONS_MOBILE_MAX_DEVICES": (int, 1),
    "NOTIFICATIONS_STREAMS_PER_USER": (int, 1),
    "NOTIFICATIONS_STREAMS_PER_ADDRESS": (int, 1),
    "NOTIFICATIONS_GROUP_ACTORS": (int, 1),
    "NOTIFICATIONS_THROTTLE_SUMMARY_EVENTS": (int, 1),
}


_PREFIX = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def check_prefix(value: object) -> str:
    """Check ``NOTIFICATIONS_REDIS_PREFIX``: 1 to 64 letters, digits, ``_``,
    ``.`` or ``-`` (it starts every Redis key and channel, so no ``:``, braces
    or spaces).

    :param value: the setting.
    :raises ConfigurationError: for anything else.
    """
    if isinstance(value, str) and _PREFIX.match(value):
        return value
    raise ConfigurationError(
        f"NOTIFICATIONS_REDIS_PREFIX must be 1-64 letters, digits, '_', '.' or '-', not {value!r}"
    )


def apply_defaults(config: MutableMapping[str, Any]) -> None:
    """Fill in every ``NOTIFICATIONS_*`` key and check the numbers.

    ``NOTIFICATIONS_REDIS_URL`` falls back to ``REDIS_URL``, and
    ``NOTIFICATIONS_BACKEND`` to the documented ``BACKEND`` key.

    :param config: the app's configuration.
    :raises ConfigurationError: for a number of the wrong type or out of range.
    """
    config.setdefault("NOTIFICATIONS_REDIS_URL", config.get("REDIS_URL", _DEFAULT_REDIS_URL))
    config.setdefault("NOTIFICATIONS_BACKEND", config.get("BACKEND", DEFAULT_BACKEND))
    for key, default in DEFAULTS.items():
        config.setdefault(key, default)
    check_numbers(config)
    check_prefix(config["NOTIFICATIONS_REDIS_PREFIX"])
    check_locale(config)
    config["NOTIFICATIONS_CRITICAL_CATEGORIES"] = check_categories(
        "NOTIFICATIONS_CRITICAL_CATEGORIES", config["NOTIFICATIONS_CRITICAL_CATEGORIES"]
    )
    if config["NOTIFICATIONS_CATEGORIES"] is not None:
        config["NOTIFICATIONS_CATEGORIES"] = check_categories(
            "NOTIFICATIONS_CATEGORIES", config["NOTIFICATIONS_CATEGORIES"]
        )
    replicas = config["NOTIFICATIONS_REDIS_WAIT_REPLICAS"]
    if replicas is not None and (
        isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0
    ):
        raise ConfigurationError(
            f"NOTIFICATIONS_REDIS_WAIT_REPLICAS must be None or an integer >= 0, not {replicas!r}"
        )
    if "NOTIFICATIONS_STREAM_RATE" in config:
        # A rate per address locked crowds behind one proxy or NAT out; caps on
        # concurrent streams replace it (docs/deploying.rst).
        warnings.warn(
            "NOTIFICATIONS_STREAM_RATE is ignored since 0.2: streams are capped by "
            "NOTIFICATIONS_STREAMS_PER_USER, NOTIFICATIONS_STREAMS_PER_ADDRESS and "
            "NOTIFICATIONS_MAX_STREAMS instead",
            DeprecationWarning,
            stacklevel=3,
        )


def check_locale(config: MutableMapping[str, Any]) -> None:
    """Check and normalise ``NOTIFICATIONS_DEFAULT_LOCALE``: ``None`` or a
    locale Babel knows (``"fr"``, ``"pt-BR"``...).

    :param config: the app's configuration.
    :raises ConfigurationError: for anything else.
    """
    value = config["NOTIFICATIONS_DEFAULT_LOCALE"]
    if value is None:
        return
    from .i18n import parse_locale

    try:
        locale = parse_locale(value)
    except ImportError:  # Babel comes with the "i18n" extra; nothing to translate with
        locale = value if isinstance(value, str) and value.strip() else None
    if locale is None:
        raise ConfigurationError(
            f"NOTIFICATIONS_DEFAULT_LOCALE must be None or a locale such as 'en' or 'fr', "
            f"not {value!r}"
        )
    config["NOTIFICATIONS_DEFAULT_LOCALE"] = locale


def check_categories(key: str, value: object) -> tuple[str, ...]:
    """Check a list of category names (``NOTIFICATIONS_CRITICAL_CATEGORIES``,
    ``NOTIFICATIONS_CATEGORIES``) and return it as a tuple.

    :param key: the setting's name, for the error.
    :param value: the setting.
    :raises ConfigurationError: for a string, a non-iterable or a bad name.
    """
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple | set | frozenset):
        raise ConfigurationError(f"{key} must be a list of category names, not {value!r}")
    try:
        return tuple(check_category(item, key) for item in value)
    except InvalidEventError as exc:
        raise ConfigurationError(str(exc).removeprefix("invalid event: ")) from None


def check_numbers(config: Mapping[str, Any]) -> None:
    """Reject a numeric setting of the wrong type or below its minimum.

    :param config: the app's configuration.
    """
    for key, (kind, smallest) in _NUMBERS.items():
        value = config[key]
        ok_type = isinstance(value, int | float) if kind is float else isinstance(value, int)
        if isinstance(value, bool) or not ok_type or value < smallest:
            raise ConfigurationError(
                f"{key} must be {'a number' if kind is float else 'an integer'} "
                f">= {smallest}, not {value!r}"
            )


def load_backend(path: object) -> type[Backend]:
    """Import the backend class named by ``path`` (a class is accepted as is).

    :param path: a dotted path, e.g. the default
        ``flask_notifications.pubsub.redis_pubsub.RedisPubSub``.
    :raises ConfigurationError: naming the path, if it cannot be imported or
        is not a :class:`~flask_notifications.pubsub.backend.Backend` subclass.
    """
    if isinstance(path, type) and issubclass(path, Backend):
        return path
    if not isinstance(path, str):
        raise ConfigurationError(f"NOTIFICATIONS_BACKEND must be a dotted path, not {path!r}")
    try:
        cls = import_string(path)
    except ImportStringError as exc:
        raise ConfigurationError(
            f"NOTIFICATIONS_BACKEND (or BACKEND) {path!r} cannot be imported: {exc.exception}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ConfigurationError(
            f"NOTIFICATIONS_BACKEND (or BACKEND) {path!r} is not a subclass of "
            "flask_notifications.pubsub.backend.Backend"
        )
    return cls
