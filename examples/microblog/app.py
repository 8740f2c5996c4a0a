"""Private messages with a live unread badge, on Flask-Notifications.

Users log in (Flask-Login), send each other private messages and read them on
a Messages page; the navigation bar shows how many are unread, updated live.

How a message travels:

1. ``send_message`` commits a :class:`Message` row. ``notifications.on_insert``
   turns the committed row into a ``"message"`` event and hands it to
   ``notifications.send()``; a rolled-back message sends nothing.
2. The ``Messages`` hub takes ``"message"`` events; a Celery worker runs its
   consumers: ``StoreConsumer`` keeps the event in the recipient's inbox (the
   unread count is the inbox's), ``PushConsumer`` publishes it to the
   recipient's open pages, and ``FlaskMailConsumer`` e-mails it only if it
   is still unread ``MICROBLOG_EMAIL_UNREAD_AFTER`` seconds later (2 minutes;
   ``if_unread_after``, a durable timer the workers sweep).
3. Each page's inbox widget (``{{ notifications_inbox() }}`` in base.html: a
   bell, its badge and a dropdown of the inbox, on the JavaScript client)
   receives the new unread count over Server-Sent Events, or polls the inbox
   API when streaming fails, and updates the badge and the dropdown; its
   "Mark read" buttons use the inbox API.
4. Opening the Messages page marks the inbox read, which pushes a count of 0
   to every open page of that user.
5. Languages: each user picks English or French (``POST /language``). Pages
   are translated by Flask-Babel; the notification's title is sent as a
   message id with parameters (``i18n``), so each recipient's e-mail comes in
   their language (``@notifications.locale_resolver``), from the French
   catalog in ``translations/`` (see README.md for the pybabel commands).
6. "Remind me" on the Messages page schedules a reminder notification for
   later (``send(event, delay=...)``; see reminders.py).
7. Comments on a post notify its author, grouped per post (one inbox item,
   "bob and 1 other commented on your post (3)", updated in place); follows
   are throttled (``MICROBLOG_FOLLOW_LIMIT`` per ``MICROBLOG_FOLLOW_WINDOW``
   seconds and user on the open pages, the rest as one summary).
8. Operations: the Messages page shows, under each message, what the
   delivery log recorded for it (inbox, stream, e-mail); with
   ``prometheus_client`` installed (the ``metrics`` extra), ``/metrics``
   serves the Prometheus metrics.

The modules: ``app.py`` (this one: the app factory and the entry points
``app:app`` and ``app:celery``), ``config.py`` (settings from the
environment), ``extensions.py`` (the Flask extensions and the hubs'
consumers), ``models.py``, ``accounts.py`` (log in and out),
``messages.py`` (1-4, 8), ``reminders.py`` (6), ``posts.py`` (7),
``settings.py`` (5 and the Settings page), ``navigation.py`` (the inbox
widget's texts) and ``forms.py`` (the length rule of every text).

Run it from this directory, with a Redis on ``REDIS_URL`` (default
``redis://localhost:6379/0``)::

    flask --app app run                             # creates the tables and accounts
    celery -A app:celery worker --loglevel=INFO     # runs the consumers

or everything at once from the repository root: ``./run-demo.sh``.
"""

from __future__ import annotations

import accounts
import messages
import navigation
import posts
import settings
from config import from_environment
from extensions import babel, db, login_manager, notifications
from flask import Flask
from models import Message, User, init_db

__all__ = ["Message", "User", "app", "celery", "create_app", "db", "notifications"]


def create_app() -> Flask:
    """The microblog, configured from the environment (config.py), its
    tables and demo accounts created when missing.

    The hubs and their consumers are built on the one ``notifications``
    extension: create one app per process (the web server's, or the
    worker's).
    """
    app = Flask(__name__)
    app.config.update(from_environment())
    db.init_app(app)
    login_manager.init_app(app)
    # Translations of the pages and of the notifications: translations/<lang>/LC_MESSAGES.
    babel.init_app(app, locale_selector=settings.page_locale)
    notifications.init_app(app)
    messages.init_app(app)
    posts.init_app(app)
    app.register_blueprint(settings.bp)
    app.register_blueprint(accounts.bp)
    navigation.init_app(app)
    with app.app_context():
        init_db()
    return app


app = create_app()
celery = app.extensions["notifications"].celery  # for `celery -A app:celery worker`
