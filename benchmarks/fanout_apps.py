"""The two servers ``benchmarks/fanout.py`` compares, chosen by ``BENCH_APP``.

- ``ours``: Flask-Notifications, one private hub ``Bench`` whose broadcasts
  every identified stream reads; the identity is the ``user`` query
  argument. ``BENCH_INIT=url`` (the default): ``Notifications(app)`` with
  ``NOTIFICATIONS_REDIS_URL`` (``REDIS_URL``, which may be a
  ``redis+cluster://`` URL; then ``BROKER_URL`` is the Celery broker);
  ``BENCH_INIT=broker``: ``init_app(app, celery=Celery(...),
  broker=redis.StrictRedis.from_url(...))``.
- ``flask_sse``: Flask-SSE's blueprint at ``/stream`` (``?channel=`` picks
  the Redis channel; one Redis subscription per stream, by design).
"""

from __future__ import annotations

import os

from flask import Flask, request

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]
if os.environ.get("BENCH_HEARTBEAT"):  # fanout.py --heartbeat
    app.config["NOTIFICATIONS_HEARTBEAT"] = float(os.environ["BENCH_HEARTBEAT"])

if os.environ.get("BENCH_APP", "ours") == "ours":
    from flask_notifications import Notifications

    if os.environ.get("BENCH_INIT", "url") == "broker":
        # The third documented way, with every default: the app's own Celery
        # app and Redis client (the library builds its own pool from it).
        import redis
        from celery import Celery

        notifications = Notifications()
        notifications.init_app(
            app,
            celery=Celery("fanout_apps", broker=os.environ["REDIS_URL"]),
            broker=redis.StrictRedis.from_url(os.environ["REDIS_URL"]),
        )
    else:
        app.config["NOTIFICATIONS_REDIS_URL"] = os.environ["REDIS_URL"]
        if os.environ.get("BROKER_URL"):  # with a Redis Cluster: the broker apart
            app.config["CELERY_BROKER_URL"] = os.environ["BROKER_URL"]
        notifications = Notifications(app)
    # Private, and its broadcasts reach every signed-in stream (since 0.2 a
    # private hub needs a readers rule for that).
    notifications.create_hub("Bench", readers=lambda identity: identity is not None)

    @notifications.identity_loader
    def identity():
        return request.args.get("user")

else:
    from flask_sse import sse

    app.register_blueprint(sse, url_prefix="/stream")


@app.get("/health")
def health():
    return {"pid": os.getpid()}
