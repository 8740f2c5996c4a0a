"""The two servers ``benchmarks/fanout.py`` compares, chosen by ``BENCH_APP``.

- ``ours``: Flask-Notifications, one private hub ``Bench``; the identity is
  the ``user`` query argument.
- ``flask_sse``: Flask-SSE's blueprint at ``/stream`` (``?channel=`` picks
  the Redis channel; one Redis subscription per stream, by design).
"""

from __future__ import annotations

import os

from flask import Flask, request

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]

if os.environ.get("BENCH_APP", "ours") == "ours":
    from flask_notifications import Notifications

    app.config["NOTIFICATIONS_REDIS_URL"] = os.environ["REDIS_URL"]
    notifications = Notifications(app)
    notifications.create_hub("Bench")

    @notifications.identity_loader
    def identity():
        return request.args.get("user")

else:
    from flask_sse import sse

    app.register_blueprint(sse, url_prefix="/stream")


@app.get("/health")
def health():
    return {"pid": os.getpid()}
