"""The user's settings: the notification settings page (per channel and
category switches and the e-mail digest, on the library's preferences) and
the language of the pages and notifications (Flask-Babel)."""

from __future__ import annotations

from typing import Any

from config import LANGUAGES
from extensions import N_, db, notifications
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext, refresh
from flask_login import current_user, login_required
from models import user_by_id

__all__ = ["bp", "digest_from", "locale_of", "page_locale", "settings_page"]

bp = Blueprint("settings", __name__)

#: The channels the Settings page shows, with their labels.
SETTINGS_CHANNELS = {"inbox": N_("In the app"), "stream": N_("Live"), "email": N_("By e-mail")}
#: Labels of the categories (others show their name).
CATEGORY_LABELS = {"messages": N_("Private messages"), "security": N_("Security notices")}
#: The e-mail digest's choices, and the time zones offered for it.
DIGEST_FREQUENCIES = {
    "": N_("One e-mail per notification"),
    "hourly": N_("One e-mail per hour"),
    "daily": N_("One e-mail per day"),
    "weekly": N_("One e-mail per week"),
}
DIGEST_TIMEZONES = ("Europe/Paris", "Europe/London", "America/New_York", "Asia/Tokyo", "UTC")


# -- languages -------------------------------------------------------------------------------


def page_locale() -> str | None:
    """Flask-Babel's locale selector: the user's language, else the browser's."""
    if current_user.is_authenticated:
        return current_user.locale
    return request.accept_languages.best_match(LANGUAGES)


@notifications.locale_resolver
def locale_of(user_id: str) -> str | None:
    """The language the consumers render a recipient's notifications in.

    :param user_id: an event recipient (a user id, as a string).
    """
    user = user_by_id(user_id)
    return user.locale if user is not None else None


@bp.post("/language")
@login_required
def set_language() -> ResponseReturnValue:
    """Change the signed-in user's language (pages and notifications)."""
    locale = request.form.get("locale", "")
    if locale not in LANGUAGES:
        abort(400, description=f"language must be one of {', '.join(LANGUAGES)}")
    current_user.locale = locale
    db.session.commit()
    refresh()  # this request's locale was read before the change
    flash(gettext("Language changed."))
    return redirect(url_for("posts.index"))


# -- notification settings -------------------------------------------------------------------


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def settings() -> ResponseReturnValue:
    """Which notifications the user gets on which channel: one switch per
    channel and per channel and category, on the library's preferences
    (``notifications.preferences``, also ``GET``/``PUT /notifications/preferences``).
    Critical categories are shown locked on."""
    prefs = notifications.preferences
    if request.method == "POST":
        current = prefs.get(current_user.id)
        critical = set(current["critical_categories"])
        changes = {
            channel: {
                "enabled": f"{channel}:*" in request.form,
                "categories": {
                    category: f"{channel}:{category}" in request.form
                    for category in current["categories"]
                    if category not in critical
                },
            }
            for channel in SETTINGS_CHANNELS
        }
        changes["email"]["digest"] = digest_from(request.form)
        try:
            prefs.update(current_user.id, {"channels": changes})
        except ValueError as exc:  # InvalidQueryError: a hand-made form
            flash(str(exc))
            return settings_page(prefs.get(current_user.id)), 400
        flash(gettext("Your notification settings have been saved."))
        return redirect(url_for("settings.settings"))
    return settings_page(prefs.get(current_user.id))


def digest_from(form: Any) -> dict[str, object] | None:
    """The e-mail digest the settings form asks for (``None``: off).

    :param form: the posted form.
    """
    frequency = form.get("digest", "")
    if not frequency:
        return None
    hour, weekday = form.get("digest_hour", "8"), form.get("digest_weekday", "0")
    return {
        "frequency": frequency,
        "hour": int(hour) if hour.isdigit() else hour,  # the library checks the range
        "weekday": int(weekday) if weekday.isdigit() else weekday,
        "timezone": form.get("digest_timezone", "UTC"),
    }


def settings_page(preferences: dict[str, Any]) -> str:
    """The settings page for ``preferences`` (``notifications.preferences.get()``).

    :param preferences: the user's preferences.
    """
    weekdays = [N_("Monday"), N_("Tuesday"), N_("Wednesday"), N_("Thursday"), N_("Friday"),
                N_("Saturday"), N_("Sunday")]  # fmt: skip
    return render_template(
        "settings.html",
        preferences=preferences,
        digest=preferences["channels"]["email"]["digest"],
        channels={channel: gettext(label) for channel, label in SETTINGS_CHANNELS.items()},
        labels={category: gettext(label) for category, label in CATEGORY_LABELS.items()},
        frequencies={key: gettext(label) for key, label in DIGEST_FREQUENCIES.items()},
        weekdays=[gettext(day) for day in weekdays],
        timezones=DIGEST_TIMEZONES,
    )
