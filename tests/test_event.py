"""Event: the predefined model, custom fields, JSON round-trip, validation."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_notifications import Event, EventTooLargeError, InvalidEventError
from flask_notifications.event import DEFAULT_MAX_EVENT_BYTES, RESERVED_FIELDS


def make(**overrides):
    fields = dict(event_id="e1", event_type="test", title="Title", body="Body")
    fields.update(overrides)
    return Event(**fields)


def test_documented_positional_signature_and_defaults():
    before = time.time()
    event = Event(None, "test", "This event will pass the filter", "The body", sender="system")
    assert uuid.UUID(event["event_id"]).version == 4
    assert event["event_type"] == "test"
    assert event["title"] == "This event will pass the filter"
    assert event["body"] == "The body"
    assert before <= event["timestamp"] <= time.time()
    assert isinstance(event["timestamp"], float)
    assert event["sender"] == "system"
    assert event["recipients"] == [] and event["tags"] == []
    assert event["expiration_datetime"] is None


def test_event_is_a_mapping():
    event = make(recipients=["a"], priority="high")
    assert isinstance(event, dict)
    assert event.get("title") == "Title"
    assert event.get("missing", 42) == 42
    assert set(event) == set(RESERVED_FIELDS) | {"priority"}
    assert event.custom_fields == {"priority": "high"}


def test_generated_ids_are_unique():
    assert len({Event(None, "t", "", "")["event_id"] for _ in range(100)}) == 100


def test_custom_fields_are_kept_even_with_awkward_names():
    event = make(priority=3, nested={"a": [1, 2]}, self="me", cls=None)
    assert event["priority"] == 3
    assert event["nested"] == {"a": [1, 2]}
    assert event["self"] == "me" and event["cls"] is None
    assert Event.from_json(event.to_json()) == event


def test_round_trip_including_datetime_and_custom_fields():
    expiry = datetime(2031, 5, 4, 3, 2, 1, 123456, tzinfo=timezone(timedelta(hours=2)))
    event = make(
        timestamp=1234.5,
        sender=7,
        recipients=[1, "bob"],
        tags=["x", "y"],
        expiration_datetime=expiry,
        extra={"k": "v"},
        text="héllo ✓ \u2028 \n",
    )
    copy = Event.from_json(event.to_json())
    assert copy == event
    assert copy["expiration_datetime"] == expiry
    assert copy["expiration_datetime"].utcoffset() == timedelta(hours=2)
    assert copy["recipients"] == ["1", "bob"] and copy["sender"] == "7"
    naive = make(expiration_datetime=datetime(2031, 1, 1, 12, 0))
    assert Event.from_json(naive.to_json())["expiration_datetime"].tzinfo is None


def test_from_json_accepts_bytes_and_generates_missing_id():
    event = Event.from_json(b'{"event_type": "t", "title": "a", "body": "b"}')
    assert uuid.UUID(event["event_id"])
    assert event["sender"] == ""


def test_timestamp_accepts_datetime():
    moment = datetime(2020, 1, 1, tzinfo=UTC)
    assert make(timestamp=moment)["timestamp"] == moment.timestamp()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"event_id": ""}, "event_id"),
        ({"event_id": 1.5}, "event_id"),
        ({"event_id": "x" * 300}, "event_id"),
        ({"event_type": ""}, "event_type"),
        ({"event_type": None}, "event_type"),
        ({"title": 5}, "title"),
        ({"body": ["b"]}, "body"),
        ({"timestamp": "now"}, "timestamp"),
        ({"timestamp": True}, "timestamp"),
        ({"timestamp": float("nan")}, "timestamp"),
        ({"sender": 1.0}, "sender"),
        ({"recipients": "bob"}, "recipients"),
        ({"recipients": [None]}, "recipients"),
        ({"recipients": [True]}, "recipients"),
        ({"tags": "x"}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"expiration_datetime": "tomorrow"}, "expiration_datetime"),
        ({"expiration_datetime": 12}, "expiration_datetime"),
    ],
)
def test_invalid_fields_name_the_field(overrides, field):
    with pytest.raises(InvalidEventError, match=field) as info:
        make(**overrides)
    assert isinstance(info.value, ValueError)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("{garbage", None),
        ("[]", None),
        ('"str"', None),
        ("", None),
        (b"\xff\xfe", None),
        ('{"title": "a", "body": "b"}', "event_type"),
        ('{"event_type": "t", "body": "b"}', "title"),
        ('{"event_type": "t", "title": "a"}', "body"),
        ('{"event_type": "t", "title": "a", "body": "b", "recipients": {"a": 1}}', "recipients"),
        ('{"event_type": "t", "title": "a", "body": "b", "timestamp": NaN}', "timestamp"),
    ],
)
def test_from_json_rejects_bad_input(text, field):
    with pytest.raises(InvalidEventError) as info:
        Event.from_json(text)
    assert info.value.field == field
    if field:
        assert field in str(info.value)


def test_from_json_rejects_non_text():
    with pytest.raises(InvalidEventError, match="str or bytes"):
        Event.from_json(12)  # type: ignore[arg-type]


def test_deeply_nested_json_is_a_clean_error():
    deep = (
        '{"event_type": "t", "title": "a", "body": "b", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    with pytest.raises(InvalidEventError):
        Event.from_json(deep, max_bytes=10**6)


def test_unserialisable_custom_field_is_named():
    event = make(when=object())
    with pytest.raises(InvalidEventError, match="when") as info:
        event.to_json()
    assert info.value.field == "when"


def test_size_limit_default_and_explicit():
    assert DEFAULT_MAX_EVENT_BYTES == 64 * 1024
    big = make(body="x" * DEFAULT_MAX_EVENT_BYTES)
    with pytest.raises(EventTooLargeError, match="65536"):
        big.to_json()
    with pytest.raises(EventTooLargeError):
        Event.from_json(json.dumps(dict(event_type="t", title="", body="x" * 70_000)))
    small = make(body="x" * 100)
    assert small.to_json(max_bytes=1000)
    with pytest.raises(EventTooLargeError):
        small.to_json(max_bytes=100)


def test_size_limit_counts_utf8_bytes_of_input():
    text = json.dumps(dict(event_type="t", title="", body="é" * 600), ensure_ascii=False)
    assert len(text) < 1000 < len(text.encode())
    with pytest.raises(EventTooLargeError):
        Event.from_json(text, max_bytes=1000)


def test_size_limit_follows_app_config(app):
    app.config["NOTIFICATIONS_MAX_EVENT_BYTES"] = 500
    event = make(body="x" * 600)
    assert event.to_json()  # outside an app context: the default limit
    with app.app_context(), pytest.raises(EventTooLargeError):
        event.to_json()


def test_validate_catches_edits_after_construction():
    event = make()
    event["title"] = None
    with pytest.raises(InvalidEventError, match="title"):
        event.validate()


def test_is_expired():
    assert not make().is_expired()
    assert make(expiration_datetime=datetime.now() - timedelta(seconds=1)).is_expired()
    assert not make(expiration_datetime=datetime.now(UTC) + timedelta(hours=1)).is_expired()


def test_coerce():
    event = make()
    assert Event.coerce(event) is event
    assert Event.coerce(event.to_json()) == event
    assert Event.coerce(dict(event)) == event


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=20), json_values, max_size=8))
def test_arbitrary_json_objects_raise_only_invalid_event_error(obj):
    try:
        event = Event.from_json(json.dumps(obj))
    except InvalidEventError:
        return
    assert Event.from_json(event.to_json()) == event


@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_invalid_event_error(text):
    try:
        Event.from_json(text)
    except InvalidEventError:
        pass
