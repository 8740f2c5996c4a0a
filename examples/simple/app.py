"""The documentation's example: two hubs with filters, and push/log/mail consumers.

Run it from this directory (a Redis on ``REDIS_URL``, default localhost)::

    python -m aiosmtpd -n -l 127.0.0.1:8025         # prints the mails it receives
    celery -A app:celery worker --loglevel=INFO     # the workers
    flask --app app run                             # the web process
    curl -X POST http://127.0.0.1:5000/send         # sends a "test" and a "system" event

``events.log`` (or ``$EVENTS_LOG``) then holds the "test" event, written by
``app.write_to_file``; ``system.log`` (or ``$SYSTEM_LOG``) holds the "system"
event, written by a :class:`LogConsumer`; both were published on their hub's
Redis channel by a :class:`PushConsumer`; and a :class:`FlaskEmailConsumer`
mailed the "system" event to ops@example.com through the SMTP server on
``$EMAIL_HOST``:``$EMAIL_PORT`` (default 127.0.0.1:8025). Without an SMTP
server, only the mail fails: its task retries, then becomes a dead letter
(``flask --app app notifications dead-letters``).
"""

from __future__ import annotations

import os
from datetime import datetime

from flask import Flask, jsonify, redirect, render_template_string, request

from flask_notifications import Event, Notifications
from flask_notifications.consumers import FlaskEmailConsumer, LogConsumer, PushConsumer
from flask_notifications.filters import BeforeDate, Not, WithEventType

EVENTS_LOG = os.environ.get("EVENTS_LOG", "events.log")
SYSTEM_LOG = os.environ.get("SYSTEM_LOG", "system.log")

app = Flask(__name__)
app.config["NOTIFICATIONS_REDIS_URL"] = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
app.config["broker_connection_retry_on_startup"] = True
# The SMTP server of FlaskEmailConsumer (used by the worker): a local debugging one.
app.config["EMAIL_HOST"] = os.environ.get("EMAIL_HOST", "127.0.0.1")
app.config["EMAIL_PORT"] = int(os.environ.get("EMAIL_PORT", "8025"))
app.config["EMAIL_TIMEOUT"] = 5  # seconds; a server that does not answer fails fast

notifications = Notifications(app=app)
celery = app.extensions["notifications"].celery  # for `celery -A app:celery worker`
redis = app.extensions["notifications"].redis

# A hub for the "test" events sent from now on. Labels are fixed strings: the
# worker imports this module too and must derive the same hub id.
test_hub = notifications.create_hub("TestHub")
test_hub_id = test_hub.hub_id
now = datetime.now()
test_hub.filter_by(WithEventType("test") & Not(BeforeDate(now)))


@test_hub.register_consumer(celery_task_name="app.write_to_file")
def write_to_file(event, *args, **kwargs):
    with open(EVENTS_LOG, "a", encoding="utf-8") as f:
        f.write(str(event) + "\n")


test_hub.register_consumer(PushConsumer(redis, test_hub_id))

# A second hub for "system" events: logged as JSON lines, pushed, and mailed
# to a fixed address (the event's title is the subject).
system_hub = notifications.create_hub("SystemHub")
system_hub.filter_by(WithEventType("system"))
system_hub.register_consumer(LogConsumer(SYSTEM_LOG))
system_hub.register_consumer(PushConsumer(redis, system_hub.hub_id))
system_hub.register_consumer(
    FlaskEmailConsumer.from_app(app, sender="simple@example.com", recipients=["ops@example.com"])
)


INDEX = """<!doctype html>
<title>Flask-Notifications: the documentation's example</title>
<h1>Flask-Notifications: the documentation's example</h1>
<form method="post" action="/send?next=/"><button>Send a "test" and a "system" event</button></form>
{% for hub in current_notifications.hubs %}
  <h2>{{ hub.label }} <small>{{ hub.hub_id }}</small></h2>
  <p>Filter: <code>{{ hub.filter }}</code><br>Consumers: {{ hub.consumers|join(", ") }}</p>
{% endfor %}
<h2>{{ events_log }}</h2><pre>{{ events }}</pre>
<h2>{{ system_log }}</h2><pre>{{ system }}</pre>
<p>The worker writes these files; reload after sending.</p>
"""


def _tail(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return "".join(f.readlines()[-10:])
    except FileNotFoundError:
        return "(nothing yet)"


@app.get("/")
def index():
    """A page to send the events and see what the consumers wrote."""
    return render_template_string(
        INDEX,
        events_log=EVENTS_LOG,
        system_log=SYSTEM_LOG,
        events=_tail(EVENTS_LOG),
        system=_tail(SYSTEM_LOG),
    )


@app.post("/send")
def send():
    """Send the documentation's two events."""
    passing = Event(
        None,
        "test",
        "This event will pass the filter",
        "This is the body of the test",
        sender="system",
    )
    notifications.send(passing.to_json())
    other = Event(
        None,
        "system",
        "This event will not pass the filter",
        "This is the body of the test",
        sender="system",
    )
    notifications.send(other.to_json())
    if request.args.get("next") == "/":
        return redirect("/")
    return jsonify(sent=[passing["event_id"], other["event_id"]])


@app.get("/hubs")
def hubs():
    """The hubs, their filters and consumers."""
    return jsonify(
        {
            hub.label: {
                "hub_id": hub.hub_id,
                "filter": repr(hub.filter),
                "consumers": list(hub.consumers),
            }
            for hub in notifications.hubs
        }
    )
