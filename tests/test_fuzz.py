"""Fuzzing (hypothesis) of every HTTP route of the extension and of the event
schema: hostile paths, query strings, headers and bodies get a 2xx or a 4xx
(a JSON message for our own 4xx), never a 5xx; a hostile event is an Event
or an InvalidEventError, never another exception."""

from __future__ import annotations

import json
import re
from urllib.parse import quote, urlencode

import pytest
from flask import request
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flask_notifications import Event, InvalidEventError, Notifications
from flask_notifications.consumers import StoreConsumer

#: Every route the blueprint registers, as (rule, method); a new route must be added here.
ROUTES = [
    ("/notifications/stream/<path:label>", "GET"),
    ("/notifications", "GET"),
    ("/notifications/inbox", "GET"),
    ("/notifications/unread-count", "GET"),
    ("/notifications/<notification_id>/read", "POST"),
    ("/notifications/read-all", "POST"),
    ("/notifications/<event_id>/deliveries", "GET"),
    ("/notifications/preferences", "GET"),
    ("/notifications/preferences", "PUT"),
    ("/notifications/service-worker.js", "GET"),
    ("/notifications/push-subscriptions/key", "GET"),
    ("/notifications/push-subscriptions", "POST"),
    ("/notifications/push-subscriptions", "DELETE"),
    ("/notifications/devices", "POST"),
    ("/notifications/devices", "GET"),
    ("/notifications/devices", "DELETE"),
    ("/notifications/static/<path:filename>", "GET"),
]

fuzz = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
texts = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"[" * 100_000, b'{"a":' * 50_000, b"x" * 200_000]),  # recursion, size
    st.integers(1, 2000).map(lambda n: b'{"endpoint": "' + b"x" * n * 50 + b'"}'),
    st.just(b'{"endpoint": "https://push.example.test/x", "keys": {"p256dh": "a", "auth": "b"}}'),
    # preferences: real channels and keys with hostile values
    st.fixed_dictionaries(
        {
            "channels": st.dictionaries(
                st.sampled_from(["email", "inbox", "stream", "webpush", "mobile", "sms"]) | texts,
                st.dictionaries(
                    st.sampled_from(["enabled", "categories", "event_types", "digest"]) | texts,
                    json_values | st.dictionaries(texts | st.just("security"), json_values),
                    max_size=3,
                ),
                max_size=3,
            )
        }
    ).map(lambda v: json.dumps(v).encode()),
)
identities = st.sampled_from([None, "alice", "", " ", "42", "é\u202e"])
last_ids = st.one_of(
    st.none(),
    st.from_regex(r"\A[0-9]{1,22}-[0-9]{1,22}\Z"),
    texts.filter(lambda t: "\n" not in t and "\r" not in t),
)


@pytest.fixture
def app(make_app, tmp_path):
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}",
        NOTIFICATIONS_MAX_BODY_BYTES=4096,
        CELERY_TASK_ALWAYS_EAGER=True,
    )
    notifications = Notifications(app)
    notifications.create_hub("Inbox").register_consumer(StoreConsumer())
    notifications.create_hub("News", public=True)
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    with app.app_context():
        notifications.send(Event(None, "message", "hello", "", recipients=["alice"]))
        yield app
        notifications.shutdown()


def test_the_fuzzed_routes_are_every_route(app):
    found = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("notifications.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert found == set(ROUTES)


def fill(rule: str, values: list[str]) -> str:
    """``rule`` with each ``<...>`` replaced by a URL-quoted value."""
    parts = iter(values)
    return re.sub(r"<[^>]+>", lambda _m: quote(next(parts), safe=""), rule)


@pytest.mark.parametrize(("rule", "method"), ROUTES)
@given(
    path_values=st.lists(st.sampled_from(["Inbox", "News", "1", "²", "..", "%00"]) | texts,
                         min_size=2, max_size=2),
    query=st.dictionaries(
        st.sampled_from(["since", "page", "per_page", "unread", "lastEventId", "x"]),
        texts, max_size=4),
    identity=identities,
    last_id=last_ids,
    content_type=st.sampled_from(["application/json", "text/plain", None, "application/json; x"]),
    body=bodies,
)  # fmt: skip
@example(
    path_values=["Inbox", "1"],
    query={},
    identity="alice",
    last_id=None,
    content_type="application/json",
    body=b"[" * 100_000,
)
@example(
    path_values=["News", "2"],
    query={"page": "²"},
    identity="alice",
    last_id="1-" + "9" * 20,
    content_type="application/json",
    body=b'{"endpoint": "' + b"x" * 100_000 + b'"}',
)
@fuzz
def test_no_route_answers_5xx(
    app, rule, method, path_values, query, identity, last_id, content_type, body
):
    headers = {}
    if identity is not None:
        headers["X-User"] = identity
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    if content_type is not None:
        headers["Content-Type"] = content_type
    path = fill(rule, path_values)
    if query:
        path += "?" + urlencode(query)
    client = app.test_client()
    response = client.open(
        path,
        method=method,
        headers=headers,
        data=body if method != "GET" else None,
        buffered=False,
    )
    try:
        assert response.status_code < 500, (path, response.status_code)
        if 400 <= response.status_code < 500 and response.mimetype == "application/json":
            assert response.get_json()["error"]
    finally:
        response.close()


EVENT_FIELDS = [
    "event_id", "event_type", "title", "body", "timestamp", "sender", "recipients",
    "expiration_datetime", "tags", "priority", "data", "url", "icon", "category",
]  # fmt: skip


@given(
    fields=st.dictionaries(st.sampled_from(EVENT_FIELDS) | texts, json_values, max_size=10),
)
@settings(max_examples=300, deadline=None)
def test_any_event_is_valid_or_refused_clearly(fields):
    for build in (Event.from_dict, lambda f: Event.from_json(json.dumps(f))):
        try:
            event = build(fields)
        except InvalidEventError as exc:
            assert str(exc)
            continue
        assert Event.from_json(event.to_json()) == event  # what is accepted round-trips


@given(raw=st.one_of(st.binary(max_size=300), st.integers(1, 50_000).map(lambda n: "[" * n)))
@settings(max_examples=100, deadline=None)
def test_any_event_json_is_parsed_or_refused_clearly(raw):
    try:
        Event.from_json(raw)
    except InvalidEventError as exc:
        assert str(exc)
