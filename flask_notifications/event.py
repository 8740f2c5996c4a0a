"""The :class:`Event`: a validated dictionary with a predefined model.

An event is what an application sends and what every consumer receives. It is
a plain ``dict`` subclass so consumers can read it like any mapping, and it
travels between processes as JSON (never pickle).
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from flask import current_app, has_app_context

from .errors import EventTooLargeError, InvalidEventError

#: Default for ``NOTIFICATIONS_MAX_EVENT_BYTES``: the largest JSON form accepted.
DEFAULT_MAX_EVENT_BYTES = 64 * 1024

#: The fields every event has, in the order of :class:`Event`'s parameters.
RESERVED_FIELDS = (
    "event_id",
    "event_type",
    "title",
    "body",
    "timestamp",
    "sender",
    "recipients",
    "tags",
    "expiration_datetime",
)
#: The optional field naming an event's category (``"comments"``,
#: ``"security"``...): not reserved (an event without it has no such key), but
#: validated when present, by :func:`category_of`.
CATEGORY_FIELD = "category"
_CATEGORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_REQUIRED_JSON_FIELDS = ("event_type", "title", "body")
_MAX_ID_LENGTH = 256


def max_event_bytes() -> int:
    """Return the size limit for the current app, or the default outside one."""
    if has_app_context():
        return int(current_app.config.get("NOTIFICATIONS_MAX_EVENT_BYTES", DEFAULT_MAX_EVENT_BYTES))
    return DEFAULT_MAX_EVENT_BYTES


class Event(dict[str, Any]):
    """A notification event.

    Recipients and the sender are user identifiers; integers are accepted and
    stored as strings, so ``1`` and ``"1"`` name the same user everywhere (in
    filters, in Redis and in JSON).

    :param event_id: unique id of the event; ``None`` generates a UUID4 string.
    :param event_type: what kind of event this is (``"test"``, ``"message"``, ...).
    :param title: short human-readable title.
    :param body: human-readable body.
    :param timestamp: seconds since the epoch (a float), or a
        :class:`~datetime.datetime`; defaults to now.
    :param sender: who sent it (a user id, ``"system"``, ...).
    :param recipients: user ids the event is for.
    :param tags: free-form labels, see :class:`~flask_notifications.filters.WithTag`.
    :param expiration_datetime: after this moment the event is never consumed.
        A naive datetime is read as local time, like ``datetime.now()``.
    :param custom_fields: any further JSON-serialisable fields, kept as they are,
        except ``group``: an optional string (at most 256 characters, no
        control characters) naming the group the event belongs to, e.g.
        ``"post:42:comments"``. The inbox keeps one unread item per recipient
        and group (see :doc:`/workflows`), and the mobile consumers make it
        the collapse key. It stays a custom field (not in
        :data:`RESERVED_FIELDS`): events without it are unchanged.
    :raises InvalidEventError: when a field has the wrong type or value; the
        message and the exception's ``field`` attribute name the field.
    """

    def __init__(
        self,
        /,
        event_id: str | int | None,
        event_type: str,
        title: str,
        body: str,
        timestamp: float | datetime | None = None,
        sender: str | int = "",
        recipients: Iterable[str | int] | None = None,
        tags: Iterable[str] | None = None,
        expiration_datetime: datetime | str | None = None,
        **custom_fields: Any,
    ) -> None:
        super().__init__(
            event_id=event_id,
            event_type=event_type,
            title=title,
            body=body,
            timestamp=timestamp,
            sender=sender,
            recipients=recipients,
            tags=tags,
            expiration_datetime=expiration_datetime,
        )
        self.update(custom_fields)  # after the reserved fields: the same order as before
        self.validate()

    # -- validation ----------------------------------------------------------

    def validate(self) -> Event:
        """Check and normalise the reserved fields in place.

        Called by the constructor and again by
        :meth:`~flask_notifications.Notifications.send`, so an event edited
        after construction is still checked before it leaves the process.

        :returns: the event itself.
        :raises InvalidEventError: naming the first invalid field.
        """
        event_id = self.get("event_id")
        self["event_id"] = (
            str(uuid.uuid4()) if event_id is None else _identifier("event_id", event_id)
        )
        for field in ("event_type", "title", "body"):
            value = self.get(field)
            if not isinstance(value, str):
                raise InvalidEventError(field, f"must be a string, not {_type_name(value)}")
        if not self["event_type"]:
            raise InvalidEventError("event_type", "must not be empty")
        self["timestamp"] = _timestamp(self.get("timestamp"))
        sender = self.get("sender")
        self["sender"] = "" if sender in (None, "") else _identifier("sender", sender)
        self["recipients"] = _id_list("recipients", self.get("recipients"))
        self["tags"] = _str_list("tags", self.get("tags"))
        self["expiration_datetime"] = _datetime_or_none(self.get("expiration_datetime"))
        group = self.get("group")
        if group is not None:
            self["group"] = _group(group)
        category_of(self)
        return self

    # -- convenience ---------------------------------------------------------

    @property
    def custom_fields(self) -> dict[str, Any]:
        """The fields that are not part of the predefined model."""
        return {k: v for k, v in self.items() if k not in RESERVED_FIELDS}

    def is_expired(self, now: float | None = None) -> bool:
        """Whether ``expiration_datetime`` is set and has passed.

        :param now: epoch seconds to compare with; defaults to the current time.
        """
        expiration = self.get("expiration_datetime")
        if expiration is None:
            return False
        return expiration.timestamp() <= (time.time() if now is None else now)

    # -- JSON ----------------------------------------------------------------

    def to_json(self, max_bytes: int | None = None) -> str:
        """Serialise to a compact ASCII JSON object; ``expiration_datetime`` as ISO 8601.

        :param max_bytes: size limit; defaults to ``NOTIFICATIONS_MAX_EVENT_BYTES``.
        :raises InvalidEventError: if a custom field is not JSON-serialisable.
        :raises EventTooLargeError: if the UTF-8 JSON is bigger than the limit.
        """
        data = dict(self)
        expiration = data.get("expiration_datetime")
        if expiration is not None:
            data["expiration_datetime"] = expiration.isoformat()
        try:
            # ASCII output: lone surrogates from hostile input cannot break UTF-8
            # encoding later, and the size check needs no encode step.
            text = json.dumps(data, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidEventError(
                _unserialisable_field(data), f"not JSON-serialisable ({exc})"
            ) from None
        _check_size(text, max_bytes)
        return text

    @classmethod
    def from_json(cls, data: str | bytes | bytearray, max_bytes: int | None = None) -> Event:
        """Build an event from its JSON form, validating every field.

        ``event_type``, ``title`` and ``body`` are required; a missing or null
        ``event_id`` is generated.

        :param data: a JSON object as text or UTF-8 bytes.
        :param max_bytes: size limit; defaults to ``NOTIFICATIONS_MAX_EVENT_BYTES``.
        :raises InvalidEventError: for malformed JSON, a non-object, a missing
            or invalid field.
        :raises EventTooLargeError: if ``data`` is bigger than the limit.
        """
        if isinstance(data, bytes | bytearray):
            _check_size(data, max_bytes)
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidEventError(None, "JSON is not valid UTF-8") from None
        elif isinstance(data, str):
            _check_size(data, max_bytes)
        else:
            raise InvalidEventError(None, f"JSON must be str or bytes, not {_type_name(data)}")
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise InvalidEventError(None, f"malformed JSON ({exc})") from None
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Event:
        """Build an event from a mapping such as the parsed JSON form.

        :param obj: the fields; unknown keys become custom fields.
        :raises InvalidEventError: as :meth:`from_json`.
        """
        if not isinstance(obj, Mapping):
            raise InvalidEventError(None, f"must be a JSON object, not {_type_name(obj)}")
        for field in _REQUIRED_JSON_FIELDS:
            if field not in obj:
                raise InvalidEventError(field, "is required")
        fields = dict(obj)
        fields.setdefault("event_id", None)
        if not all(isinstance(k, str) for k in fields):
            raise InvalidEventError(None, "field names must be strings")
        return cls(**fields)

    @classmethod
    def coerce(cls, value: Event | Mapping[str, Any] | str | bytes) -> Event:
        """Return ``value`` as an :class:`Event` (from an event, mapping or JSON).

        :param value: an event, its JSON form, or a mapping of its fields.
        """
        if isinstance(value, Event):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        return cls.from_json(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


# -- field helpers ------------------------------------------------------------


def check_category(value: object, field: str = CATEGORY_FIELD) -> str:
    """``value`` if it is a category name: 1 to 64 ASCII letters, digits,
    ``_``, ``.`` or ``-``, starting with a letter or digit.

    :param value: the candidate.
    :param field: the name the error gives it.
    :raises InvalidEventError: for anything else.
    """
    if isinstance(value, str) and _CATEGORY.match(value):
        return value
    shown = repr(value)[:60]
    raise InvalidEventError(
        field,
        "must be 1-64 ASCII letters, digits, '_', '.' or '-', starting with a letter "
        f"or digit, not {shown}",
    )


def category_of(event: Mapping[str, Any]) -> str | None:
    """The event's category, or ``None`` when it has none (no ``category``
    field, or ``None``).

    :param event: the event.
    :raises InvalidEventError: when the field is not a category name.
    """
    value = event.get(CATEGORY_FIELD)
    return None if value is None else check_category(value)


def _type_name(value: object) -> str:
    return type(value).__name__


def _identifier(field: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEventError(field, f"must be a string or an integer, not {_type_name(value)}")
    text = str(value)
    if not text:
        raise InvalidEventError(field, "must not be empty")
    if len(text) > _MAX_ID_LENGTH:
        raise InvalidEventError(field, f"must be at most {_MAX_ID_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        # Ids reach mail headers (Message-ID), log lines and SSE fields.
        raise InvalidEventError(field, "must not contain control characters (CR, LF, NUL...)")
    return text


def _group(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidEventError("group", f"must be a string, not {_type_name(value)}")
    return _identifier("group", value)


def _timestamp(value: object) -> float:
    if value is None:
        return time.time()
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEventError(
            "timestamp", f"must be a number or a datetime, not {_type_name(value)}"
        )
    result = float(value)
    if not math.isfinite(result):
        raise InvalidEventError("timestamp", "must be a finite number")
    return result


def _id_list(field: str, value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidEventError(field, f"must be a list of ids, not {_type_name(value)}")
    return [_identifier(field, item) for item in value]


def _str_list(field: str, value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidEventError(field, f"must be a list of strings, not {_type_name(value)}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise InvalidEventError(field, f"must contain only strings, not {_type_name(item)}")
    return items


def _datetime_or_none(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEventError(
                "expiration_datetime", f"{value[:40]!r} is not an ISO 8601 datetime"
            ) from None
    raise InvalidEventError(
        "expiration_datetime", f"must be a datetime or ISO 8601 string, not {_type_name(value)}"
    )


def _check_size(data: str | bytes | bytearray, max_bytes: int | None) -> None:
    limit = max_event_bytes() if max_bytes is None else max_bytes
    size = len(data)
    # A character is at most 4 UTF-8 bytes: only encode when the text might be too big.
    if isinstance(data, str) and size * 4 > limit:
        size = len(data.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise EventTooLargeError(None, f"{size} bytes is over the {limit}-byte limit")


def _unserialisable_field(data: dict[str, Any]) -> str | None:
    for key, value in data.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            return key
    return None
