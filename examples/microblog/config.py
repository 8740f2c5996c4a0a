"""The microblog's settings: its constants and the Flask configuration,
read from the environment (see README.md for each variable)."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

#: The accounts created at start-up (password: ``demo``) and their language.
DEMO_USERS = {"alice": "en", "bob": "en", "carol": "fr"}
#: The languages a user can choose.
LANGUAGES = {"en": "English", "fr": "Français"}
DEMO_PASSWORD = "demo"
#: The longest message, post or comment body, in characters.
MAX_MESSAGE = 140
#: The demo database in the instance folder (see the configuration below).
DATABASE_FILE = "microblog-2026-11-29.sqlite"


def from_environment() -> dict[str, Any]:
    """The app's configuration, from the environment variables of the same
    names (``REDIS_URL`` for ``NOTIFICATIONS_REDIS_URL``), else the demo's
    defaults."""
    env = os.environ.get
    return {
        "SECRET_KEY": env("SECRET_KEY", "dev only: set SECRET_KEY in production"),
        # A relative SQLite path lives in the instance folder (Flask-SQLAlchemy 3).
        # The demo does not migrate its data: a new file each time its tables
        # (or the inbox's) change, so an older demo database is left aside.
        "SQLALCHEMY_DATABASE_URI": "sqlite:///" + env("MICROBLOG_DATABASE", DATABASE_FILE),
        "NOTIFICATIONS_REDIS_URL": env("REDIS_URL", "redis://localhost:6379/0"),
        "MAIL_SERVER": env("MAIL_SERVER", "localhost"),
        "MAIL_PORT": int(env("MAIL_PORT", "8025")),
        "MAIL_DEFAULT_SENDER": "microblog@example.com",
        # A message is e-mailed only if still unread this many seconds after it
        # was sent; "Remind me" reminds this many seconds later.
        "MICROBLOG_EMAIL_UNREAD_AFTER": float(env("MICROBLOG_EMAIL_UNREAD_AFTER", "120")),
        "MICROBLOG_REMIND_AFTER": float(env("MICROBLOG_REMIND_AFTER", "600")),
        # Follow notifications: at most this many per window and user, the
        # rest as one summary at the window's end.
        "MICROBLOG_FOLLOW_LIMIT": int(env("MICROBLOG_FOLLOW_LIMIT", "3")),
        "MICROBLOG_FOLLOW_WINDOW": float(env("MICROBLOG_FOLLOW_WINDOW", "60")),
        # The Prometheus metrics, when the metrics extra is installed.
        "NOTIFICATIONS_METRICS_ENDPOINT": (
            "/metrics" if importlib.util.find_spec("prometheus_client") else None
        ),
        # The categories users can turn off per channel on the Settings page;
        # "security" (NOTIFICATIONS_CRITICAL_CATEGORIES' default) is always on.
        "NOTIFICATIONS_CATEGORIES": ("messages",),
    }
