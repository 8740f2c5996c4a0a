"""EventFilter algebra and every predefined filter."""

from __future__ import annotations

import importlib
import time
from datetime import datetime, timedelta

import pytest

from flask_notifications import Event
from flask_notifications.event_filter import And, EventFilter, Not, Or, Xor
from flask_notifications.filters import (
    AfterDate,
    Always,
    BeforeDate,
    Expired,
    IncludesRecipient,
    Never,
    WithEventType,
    WithId,
    WithRecipients,
    WithSender,
    WithTag,
)


def ev(**overrides):
    fields = dict(event_id="id1", event_type="test", title="t", body="b")
    fields.update(overrides)
    return Event(**fields)


class Counting(EventFilter):
    def __init__(self, result):
        self.result = result
        self.calls = 0

    def filter(self, event, *args, **kwargs):
        self.calls += 1
        return self.result


T, F = Always(), Never()


def test_filter_is_callable_and_base_is_abstract():
    assert T(ev()) is True and F(ev()) is False
    with pytest.raises(NotImplementedError):
        EventFilter().filter(ev())


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (lambda: T & T, True),
        (lambda: T & F, False),
        (lambda: F | T, True),
        (lambda: F | F, False),
        (lambda: T ^ F, True),
        (lambda: T ^ T, False),
        (lambda: T ^ T ^ T, True),
        (lambda: ~T, False),
        (lambda: Not(F), True),
        (lambda: ~(T & F) | F, True),
        (lambda: (T | F) & ~(F ^ F), True),
    ],
)
def test_truth_table(expr, expected):
    assert expr()(ev()) is expected


@pytest.mark.parametrize("other", [True, 1, None, "x", lambda e: True])
def test_non_filter_operand_raises_type_error(other):
    for op in (lambda a, b: a & b, lambda a, b: a | b, lambda a, b: a ^ b):
        with pytest.raises(TypeError):
            op(T, other)
        with pytest.raises(TypeError):
            op(other, T)
    with pytest.raises(TypeError):
        Not(other)
    with pytest.raises(TypeError):
        And(T, other)


def test_filters_refuse_truth_testing():
    # `a and b` would silently be `b`: refuse it loudly.
    with pytest.raises(TypeError, match="&"):
        WithEventType("a") and WithEventType("b")  # noqa: B018
    with pytest.raises(TypeError):
        not Always()  # noqa: B018


def test_chains_flatten_and_short_circuit():
    a, b, c = Counting(True), Counting(False), Counting(True)
    combined = a & b & c
    assert isinstance(combined, And) and len(combined.filters) == 3
    assert combined(ev()) is False
    assert (a.calls, b.calls, c.calls) == (1, 1, 0)
    either = Counting(True) | Counting(False) | Counting(False)
    assert isinstance(either, Or) and len(either.filters) == 3
    assert either(ev()) and [f.calls for f in either.filters] == [1, 0, 0]
    assert len((T ^ F ^ T).filters) == 3 and isinstance(T ^ F ^ T, Xor)
    assert isinstance(T & (F | T), And) and len((T & (F | T)).filters) == 2
    assert ~~T is T


def test_repr_shows_the_expression():
    text = repr(WithEventType("test") & ~WithSender("system") | WithTag("x"))
    assert text == "((WithEventType('test') & ~WithSender('system')) | WithTag('x'))"


def test_documented_example_type_and_not_before_now():
    now = datetime.now()
    hub_filter = WithEventType("test") & Not(BeforeDate(now))
    assert hub_filter(ev(event_type="test"))
    assert not hub_filter(ev(event_type="system"))
    assert not hub_filter(ev(event_type="test", timestamp=now - timedelta(minutes=1)))


def test_with_event_type_accepts_several():
    f = WithEventType("a", "b")
    assert f(ev(event_type="a")) and f(ev(event_type="b")) and not f(ev(event_type="c"))
    with pytest.raises(TypeError):
        WithEventType()
    with pytest.raises(TypeError):
        WithEventType(3)


def test_sender_and_id_filters_normalise_ids():
    assert WithSender("system")(ev(sender="system"))
    assert not WithSender("system")(ev(sender="alice"))
    assert WithSender(7)(ev(sender="7"))
    assert WithId("id1")(ev()) and not WithId("id2")(ev())
    assert WithId(5)(ev(event_id=5))
    with pytest.raises(TypeError):
        WithSender(None)


def test_with_recipients_is_set_equality():
    f = WithRecipients(["a", 2])
    assert f(ev(recipients=["2", "a"]))
    assert f(ev(recipients=["a", "2", "a"]))
    assert not f(ev(recipients=["a"]))
    assert not f(ev(recipients=["a", "2", "c"]))
    assert WithRecipients([])(ev())
    with pytest.raises(TypeError):
        WithRecipients("ab")


def test_includes_recipient_is_membership():
    assert IncludesRecipient("b")(ev(recipients=["a", "b"]))
    assert IncludesRecipient(3)(ev(recipients=[3]))
    assert not IncludesRecipient("c")(ev(recipients=["a", "b"]))
    assert not IncludesRecipient("a")(ev())


def test_date_filters_are_strict():
    moment = datetime(2024, 6, 1, 12, 0)
    at = ev(timestamp=moment)
    before = ev(timestamp=moment - timedelta(seconds=1))
    after = ev(timestamp=moment + timedelta(seconds=1))
    assert (
        BeforeDate(moment)(before) and not BeforeDate(moment)(at) and not BeforeDate(moment)(after)
    )
    assert AfterDate(moment)(after) and not AfterDate(moment)(at) and not AfterDate(moment)(before)
    assert BeforeDate(moment.timestamp())(before)
    with pytest.raises(TypeError):
        AfterDate("2024-06-01")


def test_expired():
    assert not Expired()(ev())
    assert Expired()(ev(expiration_datetime=datetime.now() - timedelta(seconds=1)))
    assert not Expired()(ev(expiration_datetime=datetime.now() + timedelta(hours=1)))
    soon = ev(expiration_datetime=datetime.fromtimestamp(time.time() + 0.2))
    assert not Expired()(soon)
    time.sleep(0.25)
    assert Expired()(soon)


def test_with_tag():
    assert WithTag("urgent")(ev(tags=["news", "urgent"]))
    assert not WithTag("urgent")(ev(tags=["news"]))
    with pytest.raises(TypeError):
        WithTag(1)


def test_custom_filter_on_a_custom_field():
    class HighPriority(EventFilter):
        def filter(self, event, *args, **kwargs):
            return event.get("priority") == "high"

    f = HighPriority() & WithEventType("test")
    assert f(ev(priority="high")) and not f(ev(priority="low"))


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("always", "Always"),
        ("never", "Never"),
        ("with_event_type", "WithEventType"),
        ("with_sender", "WithSender"),
        ("with_recipients", "WithRecipients"),
        ("includes_recipient", "IncludesRecipient"),
        ("with_id", "WithId"),
        ("before_date", "BeforeDate"),
        ("after_date", "AfterDate"),
        ("expired", "Expired"),
        ("with_tag", "WithTag"),
    ],
)
def test_each_filter_has_its_own_module(module, name):
    mod = importlib.import_module(f"flask_notifications.filters.{module}")
    package = importlib.import_module("flask_notifications.filters")
    assert getattr(mod, name) is getattr(package, name)
    assert issubclass(getattr(mod, name), EventFilter)
