"""The JS client in real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask_notifications import Event
from flask_notifications.event_hub import hub_id_for
from flask_notifications.pubsub.redis_pubsub import RedisPubSub

# Loaded before the page's own scripts, this counts what the JS client sees
# without changing it: ``window.readyEvents``, the ``ready`` events its
# EventSource received (the first frame of a stream the server has registered,
# so anything published after it reaches the page), and ``window.polls``, the
# polling requests that completed.
INSTRUMENT = """
(() => {
  const NativeEventSource = window.EventSource;
  window.readyEvents = 0;
  window.EventSource = class extends NativeEventSource {
    constructor(url, init) {
      super(url, init);
      this.addEventListener("ready", () => { window.readyEvents += 1; });
    }
  };
  window.polls = 0;
  const open = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    if (String(url).includes("?since=")) {
      this.addEventListener("loadend", () => { window.polls += 1; });
    }
    return open.call(this, method, url, ...rest);
  };
})();
"""


def _alice_page(chromium, base, query=""):
    """A page of ``base``'s test app, as alice, with the instrumentation."""
    context = chromium.new_context()
    host = urlsplit(base).hostname
    context.add_cookies([{"name": "user", "value": "alice", "domain": host, "path": "/"}])
    context.add_init_script(INSTRUMENT)
    page = context.new_page()
    page.goto(base + "/page" + query)
    page.wait_for_function("window.conn !== undefined")
    return context, page


def test_js_client_receives_events_and_updates_the_badge(
    chromium, stream_base, redis_client, artifacts_dir
):
    context, page = _alice_page(chromium, stream_base)
    page.wait_for_function("window.readyEvents === 1")  # the stream is open

    publisher = RedisPubSub(redis_client)
    inbox = hub_id_for("Inbox")
    publisher.publish(
        inbox, Event(None, "message", "not for alice", "b", recipients=["bob"]).to_json()
    )
    publisher.publish(
        inbox, Event(None, "message", "Hello Alice", "b", recipients=["alice"]).to_json()
    )
    page.wait_for_selector("#events li")
    assert page.inner_text("#events") == "message: Hello Alice"

    assert page.eval_on_selector("#badge", "el => getComputedStyle(el).visibility") == "hidden"
    publisher.publish(
        inbox, Event(None, "unread_count", "", "", recipients=["alice"], unread=3).to_json()
    )
    page.wait_for_function("document.getElementById('badge').textContent === '3'")
    assert page.eval_on_selector("#badge", "el => getComputedStyle(el).visibility") == "visible"
    publisher.publish(
        inbox, Event(None, "unread_count", "", "", recipients=["alice"], unread=0).to_json()
    )
    page.wait_for_function(
        "getComputedStyle(document.getElementById('badge')).visibility === 'hidden'"
    )

    page.screenshot(path=str(artifacts_dir / "browser-js-client.png"))
    assert page.evaluate("window.received.length") == 1
    context.close()


def _post_polled(base, title):
    import json
    import urllib.request

    event = Event(None, "message", title, "b", recipients=["alice"])
    body = json.dumps({"data": json.loads(event.to_json())}).encode()
    request = urllib.request.Request(
        base + "/test-poll", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        response.read()


def test_js_client_polls_when_told_to_and_delivers_each_event_once(chromium, stream_base):
    context, page = _alice_page(chromium, stream_base, "?forcePolling=1")
    assert page.evaluate("window.conn.polling") is True
    _post_polled(stream_base, "polled event")
    page.wait_for_selector("#events li")
    polls = page.evaluate("window.polls")
    page.wait_for_function(f"window.polls >= {polls + 3}")  # three more polls: nothing twice
    assert page.inner_text("#events") == "message: polled event"
    context.close()


def test_js_client_falls_back_to_polling_when_the_stream_keeps_failing(chromium, stream_base):
    # alice may not stream "Secret" (403): after maxFailures attempts the client polls.
    context, page = _alice_page(chromium, stream_base, "?hub=Secret&maxFailures=2")
    page.wait_for_function("window.conn.polling === true", timeout=15000)
    _post_polled(stream_base, "via polling")
    page.wait_for_selector("#events li")
    assert page.inner_text("#events") == "message: via polling"
    context.close()


def test_js_client_shows_a_groups_events_as_one_item(
    chromium, stream_base, make_app, worker, tmp_path, artifacts_dir
):
    """Two comments on one post, through a real worker (StoreConsumer, then
    PushConsumer): the page's list shows one item, updated in place, count 2."""
    from flask_notifications import Notifications
    from flask_notifications.consumers import PushConsumer, StoreConsumer

    app = make_app(NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}")
    notifications = Notifications(app)
    hub = notifications.create_hub("Inbox")  # the hub the page streams
    hub.register_consumer(StoreConsumer())
    hub.register_consumer(PushConsumer(notifications.redis, hub))
    context, page = _alice_page(chromium, stream_base, "?list=1")
    page.wait_for_function("window.readyEvents === 1")

    def comment(title, sender):
        return Event(
            None, "comment", title, "b", sender=sender, recipients=["alice"],
            group="post:42:comments",
        )  # fmt: skip

    with worker(app), app.app_context():
        notifications.inbox.create_tables()
        notifications.send(comment("bob commented", "bob"))
        page.wait_for_function("window.received.length === 1")
        notifications.send(comment("carol commented", "carol"))
        page.wait_for_function("window.received.length === 2")
    items = page.eval_on_selector_all("#items li", "els => els.map(e => e.textContent)")
    assert items == ["carol commented (2)"]
    assert page.evaluate("window.groups") == ["post:42:comments", "post:42:comments"]
    second = page.evaluate("window.received[1]")
    assert second["count"] == 2 and second["actors"] == ["carol", "bob"]
    assert second["actor_count"] == 2 and second["group"] == "post:42:comments"
    assert page.eval_on_selector("#items li", "el => el.dataset.group") == "post:42:comments"
    page.screenshot(path=str(artifacts_dir / "browser-grouped-item.png"))
    context.close()


def test_js_client_groups_plain_events_and_polled_items(chromium, stream_base, redis_client):
    """Without an inbox item (a hub without StoreConsumer) the client counts a
    group's events itself; polled group items come with the inbox's count."""
    context, page = _alice_page(chromium, stream_base, "?list=1")
    page.wait_for_function("window.readyEvents === 1")
    publisher = RedisPubSub(redis_client)
    for title in ("one", "two", "three"):
        event = Event(None, "comment", title, "b", recipients=["alice"], group="g:1")
        publisher.publish(hub_id_for("Inbox"), event.to_json())
    page.wait_for_function("window.received.length === 3")
    items = page.eval_on_selector_all("#items li", "els => els.map(e => e.textContent)")
    assert items == ["three (3)"]
    # An inbox item brings its count; an event without one adds itself to it.
    item = Event(None, "comment", "item", "b", recipients=["alice"], group="g:1", count=5,
                 notification_id=9)  # fmt: skip
    publisher.publish(hub_id_for("Inbox"), item.to_json())
    raw = Event(None, "comment", "raw", "b", recipients=["alice"], group="g:1")
    publisher.publish(hub_id_for("Inbox"), raw.to_json())
    page.wait_for_function("window.received.length === 5")
    items = page.eval_on_selector_all("#items li", "els => els.map(e => e.textContent)")
    assert items == ["raw (6)"]
    context.close()

    context, page = _alice_page(chromium, stream_base, "?list=1&forcePolling=1")
    import json
    import urllib.request

    for title in ("first", "second"):
        event = Event(None, "comment", title, "b", sender="bob", recipients=["alice"], group="g:2")
        body = json.dumps({"data": json.loads(event.to_json())}).encode()
        request = urllib.request.Request(
            stream_base + "/test-poll", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request) as response:
            response.read()
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#items li'))"
        ".some(e => e.textContent === 'second (2)')"
    )
    assert page.eval_on_selector_all("#items li", "els => els.length") == 1
    context.close()
