"""The app of the digest tests that run a real ``celery worker`` subprocess
(and kill it). Settings from the environment: ``REDIS_URL``, ``DIGEST_DB``
(the SQLite file), ``SMTP_PORT``.

Events of type ``message`` go to the hub ``Mail``: one e-mail consumer, to
``<user>@example.org``.
"""

from __future__ import annotations

import os

from flask import Flask

from flask_notifications import Notifications
from flask_notifications.consumers import FlaskEmailConsumer
from flask_notifications.filters import WithEventType
from flask_notifications.testing import FAST_REDELIVERY

app = Flask("digest_app")
app.config.update(
    NOTIFICATIONS_REDIS_URL=os.environ["REDIS_URL"],
    NOTIFICATIONS_DATABASE_URI="sqlite:///" + os.environ["DIGEST_DB"],
    EMAIL_HOST="127.0.0.1",
    EMAIL_PORT=int(os.environ["SMTP_PORT"]),
    EMAIL_TIMEOUT=60,
    broker_connection_retry_on_startup=True,
    # A killed worker's timer is claimed again after 2 s (the lease), and its
    # unacknowledged tasks come back after 2 s (see docs/reliability.md).
    NOTIFICATIONS_TIMER_LEASE=2,
    NOTIFICATIONS_TIMER_POLL=0.2,
    CELERY_BROKER_TRANSPORT_OPTIONS=FAST_REDELIVERY,
)
notifications = Notifications(app)
celery = app.extensions["notifications"].celery
hub = notifications.create_hub("Mail").filter_by(WithEventType("message"))
hub.register_consumer(FlaskEmailConsumer.from_app(app, sender="noreply@example.com"))


@notifications.email_resolver
def address_of(user_id: str) -> str:
    return f"{user_id}@example.org"
