"""The app the inbox widget's browser tests serve (``examples/serve.py widget_app:app``).

Identity comes from the ``user`` cookie. The ``Inbox`` hub stores events in
the SQLite inbox (``DATABASE_URI``) and streams them; ``POST /compose`` sends
one from the signed-in user. POSTs to the extension's routes must carry
``X-CSRF: t0ken`` (what the widget's ``headers`` option sends), as a CSRF
protection would require.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, render_template_string, request

from flask_notifications import Event, Notifications
from flask_notifications.consumers import PushConsumer, StoreConsumer

CSRF = "t0ken"

app = Flask("widget_app")
app.config.update(
    NOTIFICATIONS_REDIS_URL=os.environ["REDIS_URL"],
    NOTIFICATIONS_DATABASE_URI=os.environ["DATABASE_URI"],
    broker_connection_retry_on_startup=True,
)
notifications = Notifications(app)
inbox = notifications.create_hub("Inbox")
inbox.register_consumer(StoreConsumer())
inbox.register_consumer(PushConsumer(notifications.redis, inbox.hub_id))


@notifications.identity_loader
def identity():
    return request.cookies.get("user")


@app.before_request
def csrf():
    if request.method == "POST" and request.path.startswith("/notifications/"):
        if request.headers.get("X-CSRF") != CSRF:
            return jsonify(error="the CSRF header is missing"), 400
    return None


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>widget</title></head>
<body>
<nav><a href="#top" id="before">Home</a>
{% if bare %}{{ notifications_inbox() }}{% else %}
{{ notifications_inbox(preferences_url="/settings?tab=notifications", page_size=3,
                       poll_interval=0.2, headers={"X-CSRF": csrf}) }}{% endif %}
</nav>
<main id="top">Page</main>
</body></html>
"""


@app.get("/page")
def page():
    return render_template_string(PAGE, bare="bare" in request.args, csrf=CSRF)


@app.post("/compose")
def compose():
    """Send ``{"to": user, "title": ...}`` from the signed-in user (to the worker)."""
    body = request.get_json()
    event = Event(None, "message", body["title"], "", sender=identity(), recipients=[body["to"]])
    notifications.send(event)
    return jsonify(event_id=event["event_id"])


@app.get("/health")
def health():
    return {"pid": os.getpid()}
