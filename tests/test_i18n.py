"""The recipient's language: e-mail and Web Push rendered per locale with
Flask-Babel, through a real worker, Redis, SMTP server (aiosmtpd), SQLite
inbox and a push service that decrypts the payloads (tests/test_webpush.py)."""

from __future__ import annotations

import gettext
import logging
import re
from datetime import datetime
from pathlib import Path

import pytest
from babel.messages import frontend, mofile, pofile
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from flask_babel import Babel

from flask_notifications import ConfigurationError, Event, InvalidMessageError, Notifications, i18n
from flask_notifications.consumers import FlaskEmailConsumer, WebPushConsumer

from .conftest import ROOT, wait_for
from .test_mobile_fcm import ca, fcm  # noqa: F401 - the fake FCM's fixtures
from .test_webpush import LOOPBACK, SUB, push_service  # noqa: F401 - the push service's fixture

ADDRESSES = {
    "alice": "alice@example.org",  # French
    "bob": "bob@example.org",  # English
    "dora": "dora@example.org",  # German: no catalog, neither the app's nor the package's
    "carol": "carol@example.org",  # the resolver raises for her
    "dave": "dave@example.org",  # the resolver answers garbage
    "erin": "erin@example.org",  # the resolver answers a string that is no locale
}
LOCALES = {"alice": "fr-FR", "bob": "en", "dora": "de", "dave": 42, "erin": "xx-nonsense"}

TITLE = "New comment"
BODY = "%(author)s commented on “%(post)s”"
#: The app's own French catalog (its "messages" domain).
APP_FRENCH = {TITLE: "Nouveau commentaire", BODY: "%(author)s a commenté « %(post)s »"}
FOOTER_FR = "Vous recevez cet e-mail car les notifications sont activées pour votre compte."
FOOTER_EN = "You receive this e-mail because notifications are turned on for your account."


def write_catalog(directory: Path, locale: str, messages: dict[str, str]) -> None:
    catalog = Catalog(locale=locale)
    for msgid, text in messages.items():
        catalog.add(msgid, text)
    target = directory / locale / "LC_MESSAGES"
    target.mkdir(parents=True)
    with open(target / "messages.mo", "wb") as out:
        mofile.write_mo(out, catalog)


def locale_of(user):
    if user == "carol":
        raise LookupError("the user service is down")
    return LOCALES.get(user)


@pytest.fixture
def vapid_keys():
    from flask_notifications.webpush import generate_vapid_keys

    return generate_vapid_keys()


@pytest.fixture
def i18n_app(make_app, smtp_server, tmp_path, vapid_keys):
    """An app with Flask-Babel and its own French catalog, a hub with an
    e-mail consumer and a Web Push consumer, and the locale resolver above."""
    translations = tmp_path / "translations"
    write_catalog(translations, "fr", APP_FRENCH)
    server = smtp_server()
    app = make_app(
        BABEL_TRANSLATION_DIRECTORIES=str(translations),
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=server.port,
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}",
        NOTIFICATIONS_VAPID_PRIVATE_KEY=vapid_keys[0],
        NOTIFICATIONS_VAPID_PUBLIC_KEY=vapid_keys[1],
        NOTIFICATIONS_VAPID_CLAIMS_SUB=SUB,
        **LOOPBACK,
    )
    Babel(app)
    notifications = Notifications(app)
    notifications.email_resolver(ADDRESSES.get)
    notifications.locale_resolver(locale_of)
    hub = notifications.create_hub("Comments")
    hub.register_consumer(FlaskEmailConsumer.from_app(app, sender="noreply@example.com"))
    hub.register_consumer(WebPushConsumer(timeout=5), celery_task_name="tests.i18n.push")
    return app, notifications, server


def comment(recipients, **fields):
    fields.setdefault("title", "")
    fields.setdefault("body", "")
    return Event(
        None,
        "comment",
        sender="bob",
        recipients=recipients,
        url="https://example.org/posts/7",
        **fields,
    )


def translated_comment(recipients, **fields):
    message = {"title": TITLE, "body": BODY, "params": {"author": "Bob", "post": "Vélo"}}
    return comment(recipients, i18n=message, **fields)


def parts(mail):
    return mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()


def test_a_french_and_an_english_user_each_get_their_language(i18n_app, push_service, worker):  # noqa: F811
    app, notifications, server = i18n_app
    browsers = {user: push_service.browser() for user in ("alice", "bob")}
    with app.app_context():
        for user, browser in browsers.items():
            notifications.push_subscriptions.add(user, browser.subscription())
    with worker(app), app.app_context():
        sent = notifications.send(translated_comment(["alice", "bob"]))
        wait_for(lambda: len(server.messages) == 2, timeout=20)
        wait_for(lambda: all(push_service.payloads(b) for b in browsers.values()), timeout=20)
    # The event as sent (inbox, streams) carries the default locale's text.
    assert (sent["title"], sent["body"]) == ("New comment", "Bob commented on “Vélo”")

    alice, bob = server.to(ADDRESSES["alice"])[0], server.to(ADDRESSES["bob"])[0]
    assert alice["Subject"] == "Nouveau commentaire"
    text, html = parts(alice)
    assert "Bob a commenté « Vélo »" in text and "Bob a commenté « Vélo »" in html
    assert "Ouvrir: https://example.org/posts/7" in text  # the package's own strings
    assert FOOTER_FR in text and FOOTER_FR.replace("'", "&#39;") in html
    assert bob["Subject"] == "New comment"
    text, html = parts(bob)
    assert "Bob commented on “Vélo”" in text and "Open: https://example.org/posts/7" in text
    assert FOOTER_EN in text and "commenté" not in text

    (french,) = push_service.payloads(browsers["alice"])
    (english,) = push_service.payloads(browsers["bob"])
    assert (french["title"], french["body"]) == ("Nouveau commentaire", "Bob a commenté « Vélo »")
    assert (english["title"], english["body"]) == ("New comment", "Bob commented on “Vélo”")
    assert french["data"]["event_id"] == english["data"]["event_id"] == sent["event_id"]


def test_finished_text_keeps_its_words_and_the_templates_speak_french(i18n_app, worker):
    app, notifications, server = i18n_app
    event = comment(["alice"], title="Réunion à 15 h", body="Salle B")
    with worker(app), app.app_context():
        notifications.send(event)
        wait_for(lambda: server.messages, timeout=20)
    (mail,) = server.messages
    assert mail["Subject"] == "Réunion à 15 h"
    text, _ = parts(mail)
    assert "Salle B" in text and "Ouvrir" in text and FOOTER_FR in text


def test_a_missing_translation_falls_back(i18n_app, worker):
    """Dora's German has no catalog: she gets the fallback text given to
    send(), or the msgid formatted when none was given; the package strings
    stay English."""
    app, notifications, server = i18n_app
    with worker(app), app.app_context():
        notifications.send(translated_comment(["dora"], title="A comment on your post"))
        wait_for(lambda: server.messages, timeout=20)
    (mail,) = server.messages
    assert mail["Subject"] == "A comment on your post"  # the sender's fallback title
    text, _ = parts(mail)
    assert "Bob commented on “Vélo”" in text  # no fallback body: the msgid, formatted
    assert FOOTER_EN in text


class Collect(logging.Handler):
    """The records of the library's logger (the worker reconfigures logging,
    so pytest's caplog does not see what its thread logs)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_failing_or_garbage_resolver_gives_the_default_locale(i18n_app, worker):
    app, notifications, server = i18n_app
    app.config["NOTIFICATIONS_DEFAULT_LOCALE"] = "fr"
    users = ["carol", "dave", "erin"]
    logger, collect = logging.getLogger("flask_notifications"), Collect()
    with worker(app), app.app_context():
        logger.addHandler(collect)
        try:
            notifications.send(translated_comment(users))
            wait_for(lambda: len(server.messages) == 3, timeout=20)
        finally:
            logger.removeHandler(collect)
    for user in users:
        (mail,) = server.to(ADDRESSES[user])
        assert mail["Subject"] == "Nouveau commentaire", user
        assert FOOTER_FR in parts(mail)[0]
    logged = "\n".join(r.getMessage() for r in collect.records)
    assert "locale_resolver failed for user carol" in logged
    assert "locale_resolver gave 42 for user dave, not a locale" in logged
    assert "locale_resolver gave 'xx-nonsense' for user erin, not a locale" in logged


def test_the_default_locale_fills_empty_texts_and_is_checked(make_app, tmp_path):
    translations = tmp_path / "translations"
    write_catalog(translations, "fr", APP_FRENCH)
    app = make_app(
        BABEL_TRANSLATION_DIRECTORIES=str(translations), NOTIFICATIONS_DEFAULT_LOCALE="fr-FR"
    )
    Babel(app)
    notifications = Notifications(app)
    assert app.config["NOTIFICATIONS_DEFAULT_LOCALE"] == "fr_FR"
    with app.app_context():
        sent = notifications.send(translated_comment(["alice"], body="kept as given"))
    assert (sent["title"], sent["body"]) == ("Nouveau commentaire", "kept as given")
    with pytest.raises(ConfigurationError, match="NOTIFICATIONS_DEFAULT_LOCALE"):
        Notifications(make_app(NOTIFICATIONS_DEFAULT_LOCALE="klingon-xx"))


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("New comment", "must be an object, not str"),
        ({"title": TITLE, "text": "x"}, "unknown key(s) 'text'"),
        ({"params": {}}, "needs a message id"),
        ({"title": ""}, "title must be a non-empty message id"),
        ({"body": BODY, "params": {"author": "Bob"}}, "unknown placeholder %(post)s"),
        ({"body": "%s commented", "params": {"x": 1}}, "has no name"),
        ({"body": "100% sure"}, "literal percent sign as %%"),
        ({"body": "at 100%"}, "has no name"),
        ({"body": "%(n)d new", "params": {"n": "many"}}, "does not format"),
        ({"title": TITLE, "params": ["Bob"]}, "params must be an object, not list"),
        ({"title": TITLE, "params": {"when": datetime(2026, 1, 1)}}, "JSON scalars"),
        ({"title": TITLE, "params": {"who": {"name": "Bob"}}}, "JSON scalars"),
        ({"title": TITLE, "params": {"n": float("nan")}}, "JSON scalars"),
    ],
)
def test_send_rejects_a_malformed_message_naming_the_problem(app, message, error, redis_client):
    notifications = Notifications(app)
    notifications.create_hub("Comments").register_consumer(
        FlaskEmailConsumer("noreply@example.com"), celery_task_name="tests.i18n.mail"
    )
    before = redis_client.dbsize()
    with app.app_context(), pytest.raises(InvalidMessageError) as info:
        notifications.send(comment(["alice"], title="t", body="b", i18n=message))
    assert isinstance(info.value, ValueError) and info.value.field == "i18n"
    assert error in str(info.value)
    assert redis_client.dbsize() == before  # nothing claimed, nothing enqueued


def test_templates_render_once_per_locale_unless_they_name_the_recipient(
    make_app, smtp_server, tmp_path
):
    """The package's templates do not use ``user`` or ``address``: one
    rendering per locale serves every recipient; an app's template that greets
    the recipient is rendered for each."""
    server = smtp_server()
    templates = tmp_path / "templates" / "flask_notifications" / "mail"
    templates.mkdir(parents=True)
    (templates / "notification.txt").write_text("{{ _('Open') }} {{ address }}\n")
    app = make_app(EMAIL_HOST="127.0.0.1", EMAIL_PORT=server.port)
    app.template_folder = str(tmp_path / "templates")
    Babel(app)
    notifications = Notifications(app)
    notifications.email_resolver(ADDRESSES.get)
    notifications.locale_resolver(locale_of)
    consumer = FlaskEmailConsumer.from_app(app, sender="noreply@example.com")
    with app.app_context():
        assert i18n.babel_on()
        from flask_notifications.consumers._mail import recipient_free

        assert recipient_free("flask_notifications/mail/notification.html")
        assert not recipient_free("flask_notifications/mail/notification.txt")
        mails = consumer.build_all(
            comment(["alice", "bob"], title="t", body="b"),
            [("alice", ADDRESSES["alice"]), ("bob", ADDRESSES["bob"])],
        )
    assert [m.text.strip() for m in mails] == [
        f"Ouvrir {ADDRESSES['alice']}",
        f"Open {ADDRESSES['bob']}",
    ]


def test_an_edited_template_is_looked_at_again_when_templates_reload(make_app, tmp_path):
    import os

    from flask_notifications.consumers._mail import recipient_free

    folder = tmp_path / "templates" / "flask_notifications" / "mail"
    folder.mkdir(parents=True)
    template = folder / "notification.txt"
    template.write_text("{{ event.title }}\n")
    app = make_app(TEMPLATES_AUTO_RELOAD=True)
    app.template_folder = str(tmp_path / "templates")
    Notifications(app)
    name = "flask_notifications/mail/notification.txt"
    with app.app_context():
        assert recipient_free(name)
        template.write_text("{{ event.title }} for {{ user }}\n")
        later = template.stat().st_mtime + 10
        os.utime(template, (later, later))
        assert not recipient_free(name)


def test_without_flask_babel_nothing_is_translated_and_a_warning_says_why(
    make_app, smtp_server, caplog
):
    server = smtp_server()
    app = make_app(EMAIL_HOST="127.0.0.1", EMAIL_PORT=server.port)
    notifications = Notifications(app)
    notifications.email_resolver(ADDRESSES.get)
    notifications.locale_resolver(locale_of)
    consumer = FlaskEmailConsumer.from_app(app, sender="noreply@example.com")
    with app.app_context(), caplog.at_level(logging.WARNING, "flask_notifications"):
        event = notifications.send(translated_comment(["alice"]))
        assert consumer(event.to_json()) == 1
    assert event["title"] == "New comment"
    (mail,) = server.messages
    assert mail["Subject"] == "New comment" and FOOTER_EN in parts(mail)[0]
    assert "Flask-Babel is not initialised" in caplog.text


# -- the package's catalogs -----------------------------------------------------------

TRANSLATIONS = ROOT / "flask_notifications" / "translations"


def test_the_template_lists_every_string_of_the_package():
    """``flask_notifications.pot`` is what ``pybabel extract -F babel.cfg``
    finds now (see docs/i18n.rst): nobody added a string and forgot it."""
    with open(ROOT / "babel.cfg") as config:
        method_map, options_map = frontend.parse_mapping_cfg(config)
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2)}
    found = {
        entry[2] if isinstance(entry[2], str) else entry[2][0]
        for entry in extract_from_dir(
            str(ROOT / "flask_notifications"),
            [(pattern.removeprefix("flask_notifications/"), m) for pattern, m in method_map],
            options_map={k.removeprefix("flask_notifications/"): v for k, v in options_map.items()},
            keywords=keywords,
        )
    }
    with open(TRANSLATIONS / "flask_notifications.pot", "rb") as source:
        catalog = pofile.read_po(source)
    listed = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}
    assert found and found == listed


@pytest.mark.parametrize("po", sorted(TRANSLATIONS.glob("*/LC_MESSAGES/flask_notifications.po")))
def test_compiled_catalogs_match_their_sources(po):
    """Every ``.po`` is fully translated and its committed ``.mo`` is up to date
    (``pybabel compile -D flask_notifications -d flask_notifications/translations``)."""
    with open(po, "rb") as source:
        catalog = pofile.read_po(source)
    with open(po.with_suffix(".mo"), "rb") as compiled:
        translations = gettext.GNUTranslations(compiled)
    messages = [m for m in catalog if m.id]
    assert messages
    for message in messages:
        if isinstance(message.id, str):
            assert message.string, message.id
            assert translations.gettext(message.id) == message.string
        else:
            assert all(message.string), message.id
            for n, expected in ((1, message.string[0]), (5, message.string[-1])):
                assert translations.ngettext(*message.id, n) == expected
        # Both placeholder styles: %(name)s (gettext) and {name} (the inbox widget's).
        for placeholder in (r"%\((\w+)\)", r"\{(\w+)\}"):
            names = set(re.findall(placeholder, str(message.id)))
            assert names == set(re.findall(placeholder, str(message.string))), message.id


def test_a_digest_is_rendered_in_its_recipients_language(
    make_app, smtp_server, tmp_path, worker, timer_sweeper
):
    translations = tmp_path / "translations"
    write_catalog(translations, "fr", APP_FRENCH)
    server = smtp_server()
    app = make_app(
        BABEL_TRANSLATION_DIRECTORIES=str(translations),
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=server.port,
    )
    Babel(app)
    notifications = Notifications(app)
    notifications.email_resolver(ADDRESSES.get)
    notifications.locale_resolver(locale_of)
    consumer = FlaskEmailConsumer.from_app(app, sender="noreply@example.com", digest=1)
    notifications.create_hub("Digest").register_consumer(consumer, celery_task_name="t.i18n.dg")
    with app.app_context(), worker(app), timer_sweeper(app):
        for post in ("Vélo", "Train", "Bus"):
            message = {"title": TITLE, "body": BODY, "params": {"author": "Bob", "post": post}}
            notifications.send(comment(["alice", "bob"], i18n=message))
        wait_for(lambda: len(server.messages) == 2, 15)
    alice, bob = server.to(ADDRESSES["alice"])[0], server.to(ADDRESSES["bob"])[0]
    assert alice["Subject"] == "3 nouvelles notifications"
    text, html = parts(alice)
    assert text.startswith("3 nouvelles notifications:")
    assert [line for line in text.splitlines() if line.startswith("- ")] == [
        f"- Nouveau commentaire: Bob a commenté « {post} » (https://example.org/posts/7)"
        for post in ("Vélo", "Train", "Bus")
    ]
    assert FOOTER_FR in text and html.count("<li>") == 3
    assert bob["Subject"] == "3 new notifications"
    assert "- New comment: Bob commented on “Bus”" in parts(bob)[0]


def test_mobile_push_is_translated_per_device_owner(make_app, tmp_path, fcm, worker):  # noqa: F811
    from flask_notifications.consumers import FCMConsumer

    translations = tmp_path / "translations"
    write_catalog(translations, "fr", APP_FRENCH)
    app = make_app(
        BABEL_TRANSLATION_DIRECTORIES=str(translations),
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}",
        NOTIFICATIONS_FCM_CREDENTIALS=str(fcm.credentials),
        NOTIFICATIONS_FCM_ENDPOINT=fcm.base,
    )
    Babel(app)
    notifications = Notifications(app)
    notifications.locale_resolver(locale_of)
    notifications.create_hub("Alerts").register_consumer(FCMConsumer(), celery_task_name="t.fcm")
    with app.app_context():
        for user, token in (("alice", "alice-phone"), ("bob", "bob-phone")):
            notifications.devices.add(user, {"platform": "android", "token": token})
    with worker(app), app.app_context():
        notifications.send(translated_comment(["alice", "bob"]))
        wait_for(lambda: len(fcm.messages) == 2, timeout=20)
    sent = {m["token"]: m["notification"] for m in fcm.messages}
    assert sent["alice-phone"] == {"title": APP_FRENCH[TITLE], "body": "Bob a commenté « Vélo »"}
    assert sent["bob-phone"] == {"title": TITLE, "body": "Bob commented on “Vélo”"}
