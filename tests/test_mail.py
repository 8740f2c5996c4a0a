"""E-mail consumers against a real SMTP server (aiosmtpd), with and without TLS."""

from __future__ import annotations

import socket
import time

import pytest

from flask_notifications import (
    ConfigurationError,
    Event,
    MailRejected,
    MailServerUnavailable,
    Notifications,
    reliability,
)
from flask_notifications.consumers import FlaskEmailConsumer, FlaskMailConsumer
from flask_notifications.consumers.flaskemail_consumer import (
    FlaskEmailConsumer as FromModule,
)
from flask_notifications.consumers.flaskmail_consumer import FlaskMailConsumer as MailFromModule
from flask_notifications.testing import free_port

from .conftest import wait_for

ADDRESSES = {"alice": "alice@example.org", "bob": "bob@example.org", "carol": "carol@example.org"}


def email_app(make_app, server, **config):
    settings = dict(EMAIL_HOST="127.0.0.1", EMAIL_PORT=server.port if server else free_port())
    settings.update(config)
    app = make_app(**settings)
    notifications = Notifications(app)
    notifications.email_resolver(ADDRESSES.get)
    return app, notifications


def message(**fields):
    defaults = dict(event_id=None, event_type="message", title="Hello", body="Body text")
    defaults.update(fields)
    return Event(**defaults)


def parts(mail):
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    return text, html


def test_module_paths_are_the_documented_ones():
    assert FromModule is FlaskEmailConsumer and MailFromModule is FlaskMailConsumer


def test_one_message_per_recipient_with_subject_parts_and_utf8(make_app, smtp_server):
    server = smtp_server()
    app, _ = email_app(make_app, server)
    consumer = FlaskEmailConsumer.from_app(app, sender="Notifier <noreply@example.com>")
    event = message(
        title="Nouveau message – café ✓",
        body="Ça marche : 日本語 <b>not bold</b>",
        recipients=["alice", "bob", "dave"],  # dave has no address: skipped
        url="https://example.org/messages/1",
    )
    with app.app_context():
        assert consumer(event.to_json()) == 2
    assert sorted(m["To"] for m in server.messages) == [ADDRESSES["alice"], ADDRESSES["bob"]]
    assert [rcpts for _, rcpts in server.envelopes] == [[m["To"]] for m in server.messages]
    mail = server.to(ADDRESSES["alice"])[0]
    assert mail["Subject"] == "Nouveau message – café ✓"
    assert mail["From"] == "Notifier <noreply@example.com>"
    assert mail["Message-ID"].endswith("@example.com>") and event["event_id"] in mail["Message-ID"]
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Date"]
    text, html = parts(mail)
    assert "Ça marche : 日本語" in text and "https://example.org/messages/1" in text
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html  # escaped in HTML
    assert '<a href="https://example.org/messages/1">' in html
    assert mail.get_body(("html",)).get_content_charset() == "utf-8"
    bob = server.to(ADDRESSES["bob"])[0]
    assert bob["Message-ID"] != mail["Message-ID"]


def test_thread_key_sets_threading_headers(make_app, smtp_server):
    server = smtp_server()
    app, _ = email_app(make_app, server)
    consumer = FlaskEmailConsumer.from_app(app, sender="noreply@example.com")
    with app.app_context():
        consumer(message(recipients=["alice"], thread="conversation-7"))
        consumer(message(recipients=["alice"], thread="conversation-7"))
        consumer(message(recipients=["alice"], thread="other"))
        consumer(message(recipients=["alice"]))
    first, second, other, plain = server.messages
    assert first["References"] == second["References"] == first["In-Reply-To"]
    assert other["References"] != first["References"]
    assert plain["References"] is None
    assert first["Message-ID"] != second["Message-ID"]


def test_fixed_recipients_get_every_event_even_broadcasts(make_app, smtp_server):
    server = smtp_server()
    app, _ = email_app(make_app, server)
    ops = FlaskEmailConsumer.from_app(app, sender="noreply@example.com", recipients=["ops@x.org"])
    users = FlaskEmailConsumer.from_app(app, sender="noreply@example.com")
    with app.app_context():
        assert users(message()) == 0  # a broadcast: no user addresses
        assert ops(message()) == 1
    assert [m["To"] for m in server.messages] == ["ops@x.org"]


def test_hub_consumer_in_a_worker_skips_email_opt_outs(make_app, smtp_server, worker, tmp_path):
    server = smtp_server()
    app, notifications = email_app(
        make_app, server, NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'db.sqlite'}"
    )
    hub = notifications.create_hub("Mail")
    hub.register_consumer(FlaskEmailConsumer.from_app(app, sender="noreply@example.com"))
    with app.app_context():
        notifications.inbox.create_tables()
        notifications.preferences.opt_out("bob", "message", "email")
        notifications.preferences.opt_out("carol", "other", "email")  # another type
        notifications.send(message(recipients=["alice", "bob", "carol"]))
        with worker(app):
            wait_for(lambda: len(server.messages) >= 2, 15)
            time.sleep(0.3)
    assert sorted(m["To"] for m in server.messages) == [ADDRESSES["alice"], ADDRESSES["carol"]]


def test_flask_mail_consumer_creates_the_extension_and_sends(make_app, smtp_server, worker):
    server = smtp_server()
    app = make_app(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=server.port,
        MAIL_DEFAULT_SENDER=("Site", "s@x.org"),
        MAIL_SUPPRESS_SEND=False,  # Flask-Mail suppresses when TESTING
    )
    notifications = Notifications(app)
    notifications.email_resolver(ADDRESSES.get)
    consumer = FlaskMailConsumer.from_app(app)
    assert "mail" in app.extensions and consumer.sender == "Site <s@x.org>"
    notifications.create_hub("FM").register_consumer(consumer)
    with app.app_context():
        sent = notifications.send(message(title="Grüße", recipients=["alice", "bob"], thread="t"))
        with worker(app):
            wait_for(lambda: len(server.messages) == 2, 15)
            time.sleep(0.3)
    assert len(server.messages) == 2
    mail = server.to(ADDRESSES["alice"])[0]
    assert mail["Subject"] == "Grüße" and mail["From"] == "Site <s@x.org>"
    assert sent["event_id"] in mail["Message-ID"] and mail["References"]
    assert len(mail.get_all("Date")) == 1
    text, html = parts(mail)
    assert "Body text" in text and "<h2" in html


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_tls_with_a_verified_certificate(make_app, smtp_server, tls):
    server = smtp_server(tls)
    app, _ = email_app(
        make_app,
        server,
        EMAIL_USE_TLS=tls == "starttls",
        EMAIL_USE_SSL=tls == "ssl",
        EMAIL_SSL_CAFILE=str(server.cafile),
        EMAIL_TIMEOUT=5,
    )
    consumer = FlaskEmailConsumer.from_app(app, sender="noreply@example.com")
    with app.app_context():
        assert consumer(message(recipients=["alice"])) == 1
    assert server.tls_used == [True]
    # Without the certificate, the server is not trusted: nothing is sent.
    app.config["EMAIL_SSL_CAFILE"] = None
    with app.app_context(), pytest.raises(MailServerUnavailable, match="CERTIFICATE_VERIFY"):
        consumer(message(recipients=["bob"]))
    assert len(server.messages) == 1


def test_flask_mail_starttls(make_app, smtp_server):
    server = smtp_server("starttls")
    app = make_app(
        MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, MAIL_USE_TLS=True, MAIL_SUPPRESS_SEND=False
    )
    Notifications(app).email_resolver(ADDRESSES.get)
    consumer = FlaskMailConsumer.from_app(app, sender="noreply@example.com")
    with app.app_context():
        consumer(message(recipients=["alice"]))
    assert server.tls_used == [True]


def test_configuration_errors_name_the_problem(make_app):
    app, notifications = email_app(make_app, None)
    with pytest.raises(ConfigurationError, match="sender"):
        FlaskEmailConsumer.from_app(app)
    with pytest.raises(ConfigurationError, match="sender"):
        FlaskMailConsumer.from_app(app)
    with pytest.raises(ConfigurationError, match="recipients"):
        FlaskEmailConsumer.from_app(app, sender="a@x.org", recipients="b@x.org")
    with pytest.raises(ConfigurationError, match="not e-mail addresses"):
        FlaskEmailConsumer.from_app(app, sender="a@x.org", recipients=["nobody"])
    with pytest.raises(ConfigurationError, match="digest"):
        FlaskEmailConsumer.from_app(app, sender="a@x.org", digest=0)
    notifications._email_resolver = None
    consumer = FlaskEmailConsumer.from_app(app, sender="a@x.org")
    with app.app_context(), pytest.raises(ConfigurationError, match="email_resolver"):
        consumer(message(recipients=["alice"]))


def test_unreachable_server_raises_a_transient_error(make_app):
    app, _ = email_app(make_app, None, EMAIL_TIMEOUT=2)
    consumer = FlaskEmailConsumer.from_app(app, sender="a@x.org")
    with app.app_context(), pytest.raises(MailServerUnavailable, match="unreachable"):
        consumer(message(recipients=["alice"]))
    assert issubclass(MailServerUnavailable, ConnectionError)
    assert isinstance(MailServerUnavailable("x"), consumer.retry_for)


def test_unreachable_server_keeps_the_event_as_a_dead_letter_then_replay(
    make_app, smtp_server, worker
):
    port = free_port()
    app = make_app(EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, EMAIL_TIMEOUT=2)
    notifications = Notifications(app)
    notifications.email_resolver(ADDRESSES.get)
    consumer = FlaskEmailConsumer.from_app(app, sender="a@x.org")
    consumer.max_retries, consumer.retry_backoff, consumer.retry_jitter = 1, 0, False
    notifications.create_hub("Down").register_consumer(consumer)
    with app.app_context(), worker(app):
        sent = notifications.send(message(recipients=["alice"]))
        wait_for(lambda: reliability.dead_letters(), 15)
        (letter,) = reliability.dead_letters()
        assert "MailServerUnavailable" in letter["error"] and sent["event_id"] in letter["event"]
        from .smtp_server import SMTPServer

        server = SMTPServer()
        server.port = port
        server.controller.port = port
        server.start()
        try:
            assert reliability.replay_dead_letters() == 1
            wait_for(lambda: server.messages, 15)
        finally:
            server.stop()
    assert [m["To"] for m in server.messages] == [ADDRESSES["alice"]]


def test_a_retry_after_a_temporary_refusal_sends_nobody_twice(make_app, smtp_server, worker):
    server = smtp_server()
    server.refuse[ADDRESSES["bob"]] = ["451 4.3.0 try again later"]
    app, notifications = email_app(make_app, server)
    consumer = FlaskEmailConsumer.from_app(app, sender="a@x.org")
    consumer.retry_backoff, consumer.retry_jitter = 0, False
    notifications.create_hub("Retry").register_consumer(consumer)
    with app.app_context(), worker(app):
        notifications.send(message(recipients=["alice", "bob", "carol"]))
        wait_for(lambda: server.to(ADDRESSES["bob"]), 15)
        time.sleep(0.5)
    assert sorted(m["To"] for m in server.messages) == sorted(ADDRESSES.values())


def test_a_permanent_refusal_names_the_address_and_others_still_get_it(make_app, smtp_server):
    server = smtp_server()
    server.refuse[ADDRESSES["bob"]] = ["550 5.1.1 no such user"]
    app, _ = email_app(make_app, server)
    consumer = FlaskEmailConsumer.from_app(app, sender="a@x.org")
    event = message(recipients=["alice", "bob", "carol"])
    with app.app_context():
        with pytest.raises(MailRejected, match="bob@example.org: 550"):
            consumer(event)
        assert sorted(m["To"] for m in server.messages) == [ADDRESSES["alice"], ADDRESSES["carol"]]
        with pytest.raises(MailRejected):  # run again (a replay): only bob is tried
            server.refuse[ADDRESSES["bob"]] = ["550 5.1.1 no such user"]
            consumer(event)
    assert len(server.messages) == 2
    assert not isinstance(MailRejected("x"), consumer.retry_for)


def test_digest_sends_one_mail_listing_the_window(make_app, smtp_server, worker, timer_sweeper):
    server = smtp_server()
    app, notifications = email_app(make_app, server)
    consumer = FlaskEmailConsumer.from_app(app, sender="a@x.org", digest=1.5)
    # Registered under a name of the hub's: the digest's timer must still find it.
    notifications.create_hub("Digest").register_consumer(consumer, celery_task_name="t.digest")
    with app.app_context(), worker(app), timer_sweeper(app):
        for title in ("First", "Second", "Third"):
            notifications.send(message(title=title, recipients=["alice"]))
        notifications.send(message(title="For Bob", recipients=["bob"]))
        wait_for(lambda: len(server.messages) == 2, 15)
        time.sleep(2)  # nothing else comes
    assert len(server.messages) == 2
    alice = server.to(ADDRESSES["alice"])[0]
    assert alice["Subject"] == "3 new notifications"
    text, html = parts(alice)
    assert [line for line in text.splitlines() if line.startswith("- ")] == [
        "- First: Body text",
        "- Second: Body text",
        "- Third: Body text",
    ]
    assert html.count("<li>") == 3
    assert server.to(ADDRESSES["bob"])[0]["Subject"] == "For Bob"


def test_an_app_overrides_the_templates(make_app, smtp_server, tmp_path):
    server = smtp_server()
    app, _ = email_app(make_app, server)
    folder = tmp_path / "templates" / "flask_notifications" / "mail"
    folder.mkdir(parents=True)
    (folder / "notification.txt").write_text("Custom: {{ event.title }} for {{ user }}")
    app.template_folder = str(tmp_path / "templates")
    consumer = FlaskEmailConsumer.from_app(app, sender="a@x.org", subject_prefix="[Site] ")
    with app.app_context():
        consumer(message(recipients=["alice"]))
    (mail,) = server.messages
    assert mail["Subject"] == "[Site] Hello"
    text, html = parts(mail)
    assert text.strip() == "Custom: Hello for alice"
    assert "<h2" in html  # the package's HTML template still applies


@pytest.mark.parametrize("kind", ["flask-mail", "smtplib"])
def test_a_server_that_never_answers_times_out(make_app, kind):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never greets
        port = silent.getsockname()[1]
        app = make_app(
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=port,
            MAIL_TIMEOUT=1,
            MAIL_SUPPRESS_SEND=False,
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=port,
            EMAIL_TIMEOUT=1,
        )
        Notifications(app).email_resolver(ADDRESSES.get)
        cls = FlaskMailConsumer if kind == "flask-mail" else FlaskEmailConsumer
        consumer = cls.from_app(app, sender="a@x.org")
        started = time.monotonic()
        with app.app_context(), pytest.raises(MailServerUnavailable, match="timed out"):
            consumer(message(recipients=["alice"]))
        assert time.monotonic() - started < 10
