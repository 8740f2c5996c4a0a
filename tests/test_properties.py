"""Property tests (hypothesis): hostile input never breaks framing and never produces a 500."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from flask import request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_notifications import Event, Notifications
from flask_notifications.stream.framing import clean, frame

text = st.text(max_size=60)
quick = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def parse(block: bytes) -> dict[str, str]:
    """Parse one SSE message the way the EventSource spec does."""
    fields: dict[str, list[str]] = {}
    for line in block.decode("utf-8").split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
    return {"id": fields.get("id", [None])[-1], "event": fields.get("event", ["message"])[-1],
            "data": "\n".join(fields.get("data", []))}  # fmt: skip


@given(
    event_id=st.one_of(st.none(), text.filter(bool)),
    event_type=text.filter(bool),
    title=text,
    body=text,
    sender=text,
    tags=st.lists(text, max_size=3),
    custom=text,
    history_id=text,
)
@settings(max_examples=200, deadline=None)
def test_every_field_survives_sse_framing(
    event_id, event_type, title, body, sender, tags, custom, history_id
):
    try:
        event = Event(event_id, event_type, title, body, sender=sender, tags=tags, note=custom)
    except ValueError:
        return  # e.g. an over-long id: refused up front, nothing to frame
    data = frame(history_id, event["event_type"], event.to_json())
    assert data.endswith(b"\n\n") and data.count(b"\n\n") == 1  # exactly one message
    parsed = parse(data[:-2])
    assert Event.from_json(parsed["data"]) == event
    assert parsed["event"] == (clean(event_type) or "message")
    assert parsed["id"] == clean(history_id)


@pytest.fixture
def client(make_app, tmp_path):
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}",
    )
    notifications = Notifications(app)
    notifications.create_hub("Inbox")
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    with app.app_context():
        yield app.test_client()
        notifications.shutdown()


@given(last_event_id=st.text(max_size=80))
@quick
def test_any_last_event_id_never_produces_a_500(client, last_event_id):
    headers = {"X-User": "alice"}
    try:
        headers["Last-Event-ID"] = last_event_id
        response = client.get("/notifications/stream/Inbox", headers=headers, buffered=False)
    except ValueError:  # werkzeug refuses a header value with line breaks: never sent
        return
    assert response.status_code == 200
    response.close()
    response = client.get(f"/notifications/stream/Inbox?lastEventId={quote(last_event_id)}",
                          headers={"X-User": "alice"}, buffered=False)  # fmt: skip
    assert response.status_code == 200
    response.close()


@given(since=st.text(max_size=40), page=st.text(max_size=20), per_page=st.text(max_size=20),
       unread=st.text(max_size=10), item=st.text(min_size=1, max_size=30))  # fmt: skip
@quick
def test_any_query_value_never_produces_a_500(client, since, page, per_page, unread, item):
    user = {"X-User": "alice"}
    checks = [
        client.get(f"/notifications?since={quote(since)}", headers=user),
        client.get(
            f"/notifications/inbox?page={quote(page)}&per_page={quote(per_page)}"
            f"&unread={quote(unread)}",
            headers=user,
        ),  # fmt: skip
        client.post(f"/notifications/{quote(item, safe='')}/read", headers=user, json={}),
    ]
    for response in checks:
        assert response.status_code < 500, response.get_data(as_text=True)
        if response.status_code == 400:  # our validation answers: JSON with a message
            assert response.get_json()["error"]
