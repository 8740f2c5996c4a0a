"""The app the streaming tests serve with gevent (``examples/serve.py``) in a subprocess.

Identity comes from the ``X-User`` header (or ``?user=``); settings from the
environment, so each test can start a server with its own. With
``BACKEND=flask_notifications.pubsub.memory_pubsub.MemoryPubSub`` it is served
in the test process instead (the ``memory_stream`` fixture).
"""

from __future__ import annotations

import os
import tempfile

from flask import Flask, jsonify, render_template_string, request

from flask_notifications import Event, Notifications

app = Flask(__name__)
app.config.update(
    NOTIFICATIONS_REDIS_URL=os.environ["REDIS_URL"],
    NOTIFICATIONS_HEARTBEAT=float(os.environ.get("HEARTBEAT", "15")),
    NOTIFICATIONS_STREAM_QUEUE=int(os.environ.get("STREAM_QUEUE", "1000")),
    NOTIFICATIONS_HISTORY_MAXLEN=int(os.environ.get("HISTORY_MAXLEN", "10000")),
    NOTIFICATIONS_REPLAY_MAX=int(os.environ.get("REPLAY_MAX", "1000")),
    NOTIFICATIONS_STREAM_DIRECT=os.environ.get("STREAM_DIRECT", "1") == "1",
    NOTIFICATIONS_BACKEND=os.environ.get(
        "BACKEND", "flask_notifications.pubsub.redis_pubsub.RedisPubSub"
    ),
    NOTIFICATIONS_DATABASE_URI=os.environ.get("DATABASE_URI")
    or f"sqlite:///{tempfile.mkdtemp(prefix='stream-app-')}/inbox.sqlite",
    broker_connection_retry_on_startup=True,
)
if os.environ.get("METRICS_ENDPOINT"):  # test_metrics.py
    app.config["NOTIFICATIONS_METRICS_ENDPOINT"] = os.environ["METRICS_ENDPOINT"]
if os.environ.get("BROKER_URL"):  # a Redis Cluster cannot be the Celery broker
    app.config["CELERY_BROKER_URL"] = os.environ["BROKER_URL"]
notifications = Notifications(app)
inbox = notifications.create_hub("Inbox")
news = notifications.create_hub("News", public=True)
secret = notifications.create_hub("Secret")


celery = notifications.celery

if os.environ.get("METRICS_ENDPOINT"):
    # test_metrics.py: a hub whose consumers a Celery worker runs.
    from flask_notifications.consumers import Consumer, PushConsumer

    class Picky(Consumer):
        """Fails for good on body "dead"; on body "retry", fails once (a Redis counter)."""

        channel = "picky"
        retry_backoff = 0

        def consume(self, event, *args, **kwargs):
            if event["body"] == "dead":
                raise ValueError("picky refuses")
            key = f"metrics-test:{event['event_id']}"
            if event["body"] == "retry" and notifications.redis.incr(key) == 1:
                raise ConnectionError("picky is busy")

    jobs = notifications.create_hub("Jobs")
    jobs.register_consumer(PushConsumer(notifications.redis, jobs))
    jobs.register_consumer(Picky())

    @app.post("/jobs")
    def send_job():
        body = request.get_json()
        event = notifications.send(Event(None, "job", "t", body["body"], recipients=["alice"]))
        return {"event_id": event["event_id"]}


@notifications.identity_loader
def identity():
    return request.headers.get("X-User") or request.args.get("user") or request.cookies.get("user")


@notifications.stream_authorizer
def authorize(user, hub_id):
    return hub_id != secret.hub_id or user == "admin"


@app.get("/custom/<label>")
def custom(label):
    """The documented way: mount a hub's stream on a route of your own."""
    return notifications.flask_sse_notifier(notifications.create_hub(label).hub_id)


@app.get("/health")
def health():
    return {"pid": os.getpid()}


@app.get("/streams")
def streams():
    dispatcher = notifications.dispatcher
    return {"open": dispatcher.stream_count, "direct": dispatcher.direct_count}


PAGE = """<!doctype html>
<title>stream test</title>
{{ notifications_script() }}
<span id="badge" style="visibility: hidden">0</span>
<ul id="events"></ul>
<ul id="items"></ul>
<script>
  window.received = [];
  window.groups = [];
  document.addEventListener("DOMContentLoaded", function () {
    var params = new URLSearchParams(location.search);
    window.conn = FlaskNotifications.connect({
      hub: params.get("hub") || "Inbox",
      types: ["message", "comment"],
      list: params.has("list") ? "#items" : null,
      forcePolling: params.has("forcePolling"),
      maxFailures: Number(params.get("maxFailures") || 5),
      pollInterval: 200,
      onEvent: function (event, type, group) {
        window.received.push(event);
        window.groups.push(group);
        var li = document.createElement("li");
        li.textContent = type + ": " + event.title;
        document.getElementById("events").appendChild(li);
      },
      onCount: function (n) { FlaskNotifications.badge("#badge", n); },
    });
  });
</script>
"""


@app.get("/page")
def page():
    return render_template_string(PAGE)


@app.post("/test-poll")
def add_polled():
    """Store a notification for alice in the real inbox (what the polling client reads)."""
    body = request.get_json()
    notifications.inbox.store(Event.from_dict(body["data"]), ["alice"])
    return jsonify(stored=True)
