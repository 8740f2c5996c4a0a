"""What base.html's navigation needs: the inbox widget's texts in the page's
language, the settings page it links to, and the users' names."""

from __future__ import annotations

from extensions import db
from flask import Flask, has_request_context, url_for
from flask_babel import gettext
from models import User
from sqlalchemy import select

__all__ = ["init_app", "navigation", "usernames"]


def init_app(app: Flask) -> None:
    """Give ``app``'s templates :func:`navigation` and :func:`usernames`.

    :param app: the microblog.
    """
    app.context_processor(navigation)
    app.add_template_global(usernames)


def navigation() -> dict[str, object]:
    """The context processor of the navigation: the inbox widget's texts in
    the page's language, and the settings page it links to."""
    return {
        # Templates also render in the worker (the e-mails), outside any request.
        "settings_url": url_for("settings.settings") if has_request_context() else None,
        "inbox_labels": {
            "bell": gettext("Notifications"),
            "heading": gettext("Notifications"),
            "unread": gettext("{n} unread"),
            "empty": gettext("No notifications yet."),
            "loading": gettext("Loading…"),
            "error": gettext("The notifications could not be loaded."),
            "loadMore": gettext("Load more"),
            "markRead": gettext("Mark read"),
            "markAllRead": gettext("Mark all read"),
            "preferences": gettext("Notification settings"),
            "unreadItem": gettext("Unread:"),
            "othersOne": gettext("{actor} and 1 other"),
            "othersMany": gettext("{actor} and {n} others"),
        },
    }


def usernames() -> dict[str, str]:
    """User id (a string, as in events) -> username, for the pages' script
    to name a group's ``actors`` (a demo has few users)."""
    return {str(u.id): u.username for u in db.session.scalars(select(User))}
