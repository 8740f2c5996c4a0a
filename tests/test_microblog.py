"""examples/microblog: private messages with a live unread badge.

In headless Chromium against the real stack (gevent web server and Celery
worker subprocesses, Redis, SQLite, an SMTP server), and with Flask's test
client for the routes.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sqlite3
import sys

import pytest
from celery import Celery
from sqlalchemy import select

from flask_notifications.event_hub import hub_id_for
from flask_notifications.pubsub.redis_pubsub import RedisPubSub
from flask_notifications.workflows import timers

from .conftest import MICROBLOG, wait_for
from .smtp_server import SMTPServer

STREAM = "**/notifications/stream/**"
# The inbox widget in the navigation (docs/widget.rst): its parts are in its shadow root,
# which Playwright's CSS selectors enter.
WIDGET = "flask-notifications-inbox"
BADGE = "document.querySelector('flask-notifications-inbox').shadowRoot.querySelector('.badge')"
BADGE_HIDDEN = f"{BADGE}.hidden"
LIST_TEXT = (
    "document.querySelector('flask-notifications-inbox').shadowRoot.querySelector('.list')"
    ".textContent"
)

BODIES = (
    "[...document.querySelector('flask-notifications-inbox').shadowRoot"
    ".querySelectorAll('.item .body')].map(e => e.textContent).join('|')"
)


def badge_is(count: int) -> str:
    """A JS condition: the badge shows ``count`` (and is hidden at 0)."""
    return f"{BADGE}.textContent === '{count}' && {BADGE_HIDDEN} === {str(not count).lower()}"


# -- in the browser, against the real stack --------------------------------------------------


def log_in(context, base, username):
    """Log ``username`` in on a new page; return it once its stream is open."""
    page = context.new_page()
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "demo")
    with page.expect_response(lambda r: "/notifications/stream/Messages" in r.url):
        page.click("button:has-text('Log in')")
    return page


def send_message(page, base, recipient, text):
    page.goto(f"{base}/send/{recipient}")
    page.fill("textarea[name=message]", text)
    page.click("button:has-text('Send')")
    page.wait_for_selector(f"text=Your message to {recipient} has been sent.")


def unread_rows(database, username):
    """Unread inbox rows of ``username``, read straight from the SQLite file."""
    with sqlite3.connect(database) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM flask_notifications JOIN user"
            " ON flask_notifications.recipient = CAST(user.id AS TEXT)"
            " WHERE user.username = ? AND flask_notifications.read_at IS NULL",
            (username,),
        ).fetchone()
    conn.close()
    return count


@pytest.mark.subprocess
def test_live_badge_dropdown_read_and_catch_up(
    chromium, microblog_stack, redis_client, artifacts_dir
):
    base = microblog_stack.base
    alice_context, bob_context = chromium.new_context(), chromium.new_context()
    alice = log_in(alice_context, base, "alice")
    bob = log_in(bob_context, base, "bob")
    assert bob.evaluate(BADGE_HIDDEN) is True
    assert bob.locator(f"{WIDGET} .panel").is_hidden()  # closed dropdown: nothing shown

    # Alice writes: Bob's badge shows 1 without a reload.
    send_message(alice, base, "bob", "Lunch at noon?")
    bob.wait_for_function(badge_is(1), timeout=2000)

    # The dropdown lists it, from the inbox API; its title links to the Messages page.
    bob.click(f"{WIDGET} .bell")
    bob.wait_for_selector(f"{WIDGET} .item.unread", timeout=2000)
    dropdown = bob.inner_text(f"{WIDGET} .list")
    assert "New message from alice" in dropdown and "Lunch at noon?" in dropdown
    assert bob.get_attribute(f"{WIDGET} .item a.item-title", "href") == "/messages"
    assert bob.get_attribute(f"{WIDGET} a.prefs", "href") == "/settings"  # the settings page

    # The worker e-mailed it too.
    wait_for(lambda: microblog_stack.mail.messages, 15)
    (mail,) = microblog_stack.mail.messages
    assert microblog_stack.mail.envelopes[0][1] == ["bob@example.com"]
    assert mail["Subject"] == "[Microblog] New message from alice"

    # Alice writes again: the open dropdown shows it first, the badge counts 2.
    send_message(alice, base, "bob", "Or at one?")
    bob.wait_for_function(badge_is(2), timeout=2000)
    bob.wait_for_function(f"{BODIES} === 'Or at one?|Lunch at noon?'", timeout=2000)
    # Bob marks the newest read in the dropdown: the badge and the inbox follow.
    bob.click(f"{WIDGET} .item:first-child .read")
    bob.wait_for_function(badge_is(1), timeout=2000)
    assert unread_rows(microblog_stack.database, "bob") == 1

    # Bob reads his messages in another tab: both badges hide.
    messages = bob_context.new_page()
    messages.goto(base + "/messages")
    assert "Lunch at noon?" in messages.inner_text("main")
    assert "From alice" in messages.inner_text("main")
    assert messages.evaluate(BADGE_HIDDEN) is True
    bob.wait_for_function(badge_is(0), timeout=2000)
    bob.wait_for_function(f"!{LIST_TEXT}.includes('Unread:')", timeout=2000)
    messages.close()
    assert unread_rows(microblog_stack.database, "bob") == 0

    # Bob's connection is cut (the web server restarts) and stays down while
    # Alice writes again: he catches up once he can reconnect.
    bob_context.route(STREAM, lambda route: route.abort())
    microblog_stack.stop_web()
    microblog_stack.start_web()
    send_message(alice, base, "bob", "Are you there?")
    history = RedisPubSub(redis_client).history_key(hub_id_for("Messages"))
    wait_for(lambda: unread_rows(microblog_stack.database, "bob") == 1, 15)
    wait_for(lambda: redis_client.xlen(history) == 3, 15)
    assert bob.evaluate(BADGE_HIDDEN) is True  # he really missed it
    bob_context.unroute(STREAM)
    # Reconnection waits for the stream's retry delay (2 s) or the client's backoff.
    bob.wait_for_function(badge_is(1), timeout=15000)
    bob.wait_for_function(f"{LIST_TEXT}.includes('Are you there?')", timeout=2000)

    screenshot = artifacts_dir / "microblog-b.png"
    screenshot.unlink(missing_ok=True)
    bob.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 0
    alice_context.close()
    bob_context.close()


# -- with Flask's test client ---------------------------------------------------------------


@pytest.fixture(scope="module")
def microblog(redis_server, tmp_path_factory):
    """examples/microblog/app.py imported in this process (as ``microblog_app``),
    on the test Redis, a fresh SQLite file and an SMTP sink."""
    mail = SMTPServer().start()
    # Flask-CeleryExt configures Celery's current app: make it a fresh one.
    celery = Celery("microblog-tests")
    database = tmp_path_factory.mktemp("microblog") / "microblog.sqlite"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REDIS_URL", redis_server.url)
        patch.setenv("MICROBLOG_DATABASE", str(database))
        patch.setenv("MAIL_SERVER", "127.0.0.1")
        patch.setenv("MAIL_PORT", str(mail.port))
        # E-mail only what stays unread 3 s (2 minutes in the demo); remind after 1 s.
        patch.setenv("MICROBLOG_EMAIL_UNREAD_AFTER", "3")
        patch.setenv("MICROBLOG_REMIND_AFTER", "1")
        patch.setenv("MICROBLOG_FOLLOW_LIMIT", "2")
        patch.setenv("MICROBLOG_FOLLOW_WINDOW", "2")
        patch.syspath_prepend(str(MICROBLOG))  # app.py imports its modules beside it
        spec = importlib.util.spec_from_file_location("microblog_app", MICROBLOG / "app.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["microblog_app"] = module
        spec.loader.exec_module(module)
    module.mail_sink = mail
    yield module
    # The demo's modules (models, messages, settings...): no other test sees them.
    for name, loaded in list(sys.modules.items()):
        if str(getattr(loaded, "__file__", "") or "").startswith(str(MICROBLOG)):
            del sys.modules[name]
    mail.stop()
    celery.close()


@pytest.fixture
def client_for(microblog, redis_url):
    """``client_for("alice")``: a test client logged in as alice."""

    def login(username):
        client = microblog.app.test_client()
        response = client.post("/login", data={"username": username, "password": "demo"})
        assert response.status_code == 302 and response.headers["Location"] == "/"
        return client

    return login


def queued(redis_client):
    return redis_client.llen("celery")


def message_count(microblog):
    with microblog.app.app_context():
        return microblog.db.session.query(microblog.Message).count()


@pytest.mark.parametrize("path", ["/", "/messages", "/send/bob", "/settings"])
def test_pages_require_login(microblog, redis_url, path):
    response = microblog.app.test_client().get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_inbox_api_requires_login(microblog, redis_url):
    response = microblog.app.test_client().get("/notifications/inbox")
    assert response.status_code == 401


def test_login_rejects_a_wrong_password(microblog, redis_url):
    client = microblog.app.test_client()
    response = client.post("/login", data={"username": "alice", "password": "nope"})
    assert response.status_code == 401
    assert b"Invalid username or password." in response.data
    assert client.get("/").status_code == 302


def test_login_redirects_to_local_paths_only(microblog, redis_url):
    client = microblog.app.test_client()
    response = client.post(
        "/login?next=https://evil.example/", data={"username": "alice", "password": "demo"}
    )
    assert response.headers["Location"] == "/"
    client.post("/logout")
    response = client.post("/login?next=/messages", data={"username": "alice", "password": "demo"})
    assert response.headers["Location"] == "/messages"


def test_sending_to_an_unknown_user_is_404(microblog, client_for, redis_client):
    alice = client_for("alice")
    before = message_count(microblog)
    assert alice.get("/send/nobody").status_code == 404
    assert alice.post("/send/nobody", data={"message": "hi"}).status_code == 404
    assert message_count(microblog) == before and queued(redis_client) == 0


@pytest.mark.parametrize("text", ["", "   ", "x" * 141])
def test_an_empty_or_long_message_is_400(microblog, client_for, redis_client, text):
    alice = client_for("alice")
    before = message_count(microblog)
    response = alice.post("/send/bob", data={"message": text})
    assert response.status_code == 400
    assert b"A message has 1 to 140 characters." in response.data
    assert message_count(microblog) == before and queued(redis_client) == 0


def test_a_message_reaches_the_inbox_badge_and_mail_then_reading_clears_it(
    microblog, client_for, redis_client, worker, timer_sweeper
):
    inbox = microblog.notifications.inbox
    with microblog.app.app_context():
        carol_id = microblog.db.session.scalar(
            select(microblog.User.id).filter_by(username="carol")
        )
        inbox.mark_all_read(carol_id)
    alice, carol = client_for("alice"), client_for("carol")

    response = alice.post("/send/carol", data={"message": "  See you <b>soon</b>  "})
    assert response.status_code == 302
    assert queued(redis_client) == 1  # one event task for the hub's consumers
    with microblog.app.app_context(), worker(microblog.app), timer_sweeper(microblog.app):
        wait_for(lambda: inbox.unread_count(carol_id) == 1, 15)
        wait_for(lambda: microblog.mail_sink.to("carol@example.com"), 15)

    page = carol.get("/").get_data(as_text=True)
    assert 'unread="1"></flask-notifications-inbox>' in page  # the widget's first count
    listed = carol.get("/notifications/inbox").get_json()["items"]
    assert listed[0]["title"] == "New message from alice"
    assert listed[0]["body"] == "See you <b>soon</b>" and listed[0]["read"] is False
    assert microblog.mail_sink.envelopes[-1][1] == ["carol@example.com"]

    event_id = listed[0]["event_id"]
    with microblog.app.app_context():  # the e-mail's record follows the mail by a moment
        wait_for(
            lambda: all(
                r["status"] != "queued" for r in microblog.notifications.deliveries(event_id)
            ),
            15,
        )
    messages = carol.get("/messages").get_data(as_text=True)
    assert "See you &lt;b&gt;soon&lt;/b&gt;" in messages  # escaped, stripped
    # The delivery log, under the message (the page marked the inbox read first).
    assert "email: delivered · inbox: read · stream: sent" in messages
    with microblog.app.app_context():
        assert inbox.unread_count(carol_id) == 0
    assert 'unread="0"></flask-notifications-inbox>' in carol.get("/").get_data(as_text=True)
    # Alice's inbox is untouched: the message was for Carol only.
    assert alice.get("/notifications/unread-count").get_json() == {"unread": 0}


def test_each_user_gets_pages_and_mail_in_their_language(
    microblog, client_for, worker, timer_sweeper
):
    """Carol's account is French: her pages and her notification e-mail are in
    French, Bob's in English; the inbox keeps the default (English) text.
    Alice switches to French and back."""
    alice, bob, carol = client_for("alice"), client_for("bob"), client_for("carol")
    carol_page = carol.get("/").get_data(as_text=True)
    bob_page = bob.get("/").get_data(as_text=True)
    assert "Bonjour, carol !" in carol_page and "Hi, bob!" in bob_page
    # The inbox widget's texts too.
    assert "Tout marquer comme lu" in carol_page and "Mark all read" not in carol_page
    assert "Mark all read" in bob_page
    sink = microblog.mail_sink
    seen = len(sink.to("carol@example.com")), len(sink.to("bob@example.com"))
    assert alice.post("/send/carol", data={"message": "On se voit demain ?"}).status_code == 302
    assert alice.post("/send/bob", data={"message": "See you tomorrow?"}).status_code == 302
    with microblog.app.app_context(), worker(microblog.app), timer_sweeper(microblog.app):
        wait_for(
            lambda: (
                (len(sink.to("carol@example.com")), len(sink.to("bob@example.com")))
                == (seen[0] + 1, seen[1] + 1)
            ),
            15,
        )
    french, english = sink.to("carol@example.com")[-1], sink.to("bob@example.com")[-1]
    assert french["Subject"] == "[Microblog] Nouveau message de alice"
    text = french.get_body(("plain",)).get_content()
    assert "On se voit demain ?" in text and "les notifications sont activées" in text
    assert english["Subject"] == "[Microblog] New message from alice"
    assert "notifications are turned on" in english.get_body(("plain",)).get_content()
    listed = carol.get("/notifications/inbox").get_json()["items"]
    assert listed[0]["title"] == "New message from alice"

    try:
        response = alice.post("/language", data={"locale": "fr"}, follow_redirects=True)
        page = response.get_data(as_text=True)
        assert "Langue modifiée." in page and "Bonjour, alice !" in page
        assert alice.post("/language", data={"locale": "de"}).status_code == 400
    finally:
        alice.post("/language", data={"locale": "en"})
    assert "Hi, alice!" in alice.get("/").get_data(as_text=True)


# -- comments grouped per post (issue 16) ---------------------------------------------------


def user_id(microblog, username):
    with microblog.app.app_context():
        return microblog.db.session.scalar(select(microblog.User.id).filter_by(username=username))


def test_comments_are_one_inbox_item_per_post(microblog, client_for, redis_client, worker):
    inbox = microblog.notifications.inbox
    alice_id = user_id(microblog, "alice")
    with microblog.app.app_context():
        inbox.mark_all_read(alice_id)
    alice, bob, carol = client_for("alice"), client_for("bob"), client_for("carol")
    response = alice.post("/posts", data={"body": "Hello, world"})
    assert response.status_code == 302
    post = response.headers["Location"]
    assert alice.post(post + "/comments", data={"body": "my own"}).status_code == 302
    assert queued(redis_client) == 0  # the author's own comment notifies nobody
    for client, text in ((bob, "Nice"), (carol, "+1"), (bob, "Again")):
        assert client.post(post + "/comments", data={"body": text}).status_code == 302
    assert alice.post(post + "/comments", data={"body": " "}).status_code == 400
    assert alice.get("/posts/999999").status_code == 404
    with microblog.app.app_context(), worker(microblog.app):
        wait_for(
            lambda: inbox.list(alice_id).items and inbox.list(alice_id).items[0]["count"] == 3, 15
        )
    (item,) = alice.get("/notifications/inbox?unread=1").get_json()["items"]
    bob_id, carol_id = user_id(microblog, "bob"), user_id(microblog, "carol")
    assert item["group"] == f"post:{post.rsplit('/', 1)[1]}:comments"
    assert item["actors"] == [str(bob_id), str(carol_id)] and item["actor_count"] == 2
    assert item["title"] == "bob commented on your post" and item["body"] == "Again"
    page = alice.get(post).get_data(as_text=True)
    assert "Nice" in page and "+1" in page and "Again" in page


@pytest.mark.subprocess
def test_comments_update_one_live_item(chromium, microblog_stack, artifacts_dir):
    base = microblog_stack.base
    alice_context, bob_context = chromium.new_context(), chromium.new_context()
    alice = log_in(alice_context, base, "alice")
    alice.goto(base + "/")
    alice.fill("form[action='/posts'] textarea", "My first post")
    alice.click("button:has-text('Post')")
    alice.wait_for_selector("text=No comments yet.")
    post = alice.url
    with alice.expect_response(lambda r: "/notifications/stream/Activity" in r.url):
        alice.goto(base + "/")
    bob = log_in(bob_context, base, "bob")
    carol_context = chromium.new_context()
    carol = log_in(carol_context, base, "carol")
    for page, text in ((bob, "Nice post"), (carol, "Agreed"), (bob, "Indeed")):
        page.goto(post)
        page.fill("textarea[name=body]", text)
        page.click("button:has-text('Comment')")
        page.wait_for_selector(f"text={text}")
    # Three comments by two people: one item, updated in place.
    alice.wait_for_function(
        "document.querySelector('#activity-list li') && document.querySelector"
        "('#activity-list li').textContent === 'bob and 1 other commented on your post (3)'",
        timeout=15000,
    )
    assert alice.eval_on_selector_all("#activity-list li", "els => els.length") == 1
    alice.wait_for_function(badge_is(1), timeout=5000)  # one unread item for the post
    # The inbox widget's dropdown shows the item with its distinct actors and count.
    alice.click(f"{WIDGET} .bell")
    alice.wait_for_function(f"{LIST_TEXT}.includes('bob commented on your post')", timeout=5000)
    text = alice.evaluate(LIST_TEXT)
    assert " and 1 other" in text and "Indeed" in text
    alice.screenshot(path=str(artifacts_dir / "microblog-grouped-comments.png"))
    for context in (alice_context, bob_context, carol_context):
        context.close()


def test_settings_turn_a_category_off_per_channel_and_lock_critical_ones(
    microblog, client_for, redis_client, worker, timer_sweeper
):
    bob_id, carol_id = user_id(microblog, "bob"), user_id(microblog, "carol")
    prefs, inbox = microblog.notifications.preferences, microblog.notifications.inbox
    bob = client_for("bob")
    page = bob.get("/settings").get_data(as_text=True)
    assert 'name="email:messages"' in page and 'name="email:*"' in page
    # The critical category is shown, checked and locked (no name: never posted).
    assert page.count('data-critical="security"') == 3
    assert 'name="email:security"' not in page
    french = client_for("carol").get("/settings").get_data(as_text=True)  # carol reads French
    assert "Avis de sécurité" in french and "(toujours activé)" in french

    form = {"inbox:*": "on", "inbox:messages": "on", "stream:*": "on",
            "stream:messages": "on", "email:*": "on"}  # fmt: skip
    response = bob.post("/settings", data=form)
    assert response.status_code == 302
    try:
        got = bob.get("/notifications/preferences").get_json()  # the HTTP API, same switches
        assert got["channels"]["email"]["categories"] == {"messages": False, "security": True}
        assert got["channels"]["inbox"]["categories"]["messages"] is True
        page = bob.get("/settings").get_data(as_text=True)
        assert not re.search(r'name="email:messages"[^>]*checked', page)
        assert re.search(r'name="inbox:messages"[^>]*checked', page)
        off = {"channels": {"email": {"categories": {"security": False}}}}
        answer = bob.put("/notifications/preferences", json=off)
        assert answer.status_code == 400 and "critical" in answer.get_json()["error"]

        with microblog.app.app_context():
            inbox.mark_all_read(bob_id)
            inbox.mark_all_read(carol_id)
        alice = client_for("alice")
        assert alice.post("/send/bob", data={"message": "no mail for this"}).status_code == 302
        # (the e-mails go to messages still unread after a delay: the timer sweeper runs)
        with microblog.app.app_context(), worker(microblog.app), timer_sweeper(microblog.app):
            wait_for(lambda: inbox.unread_count(bob_id) == 1, 15)
            # Carol's mail is sent after Bob's e-mail task has run (one worker, in order).
            before = len(microblog.mail_sink.to("carol@example.com"))
            alice.post("/send/carol", data={"message": "a mail for this"})
            wait_for(lambda: len(microblog.mail_sink.to("carol@example.com")) > before, 15)
        sent = [m for m in microblog.mail_sink.messages if "no mail for this" in m.as_string()]
        assert sent == []
    finally:
        with microblog.app.app_context():
            prefs.set(bob_id, "email", "messages", enabled=True)


# -- workflows: e-mail only what stays unread, "remind me" ------------------------------------


def last_message_to(microblog, username):
    with microblog.app.app_context():
        return microblog.db.session.scalar(
            select(microblog.Message.id)
            .filter_by(recipient_id=user_id(microblog, username))
            .order_by(microblog.Message.id.desc())
        )


def test_only_a_message_left_unread_is_emailed(microblog, client_for, worker, timer_sweeper):
    inbox, sink = microblog.notifications.inbox, microblog.mail_sink
    alice, bob = client_for("alice"), client_for("bob")
    bob_id = user_id(microblog, "bob")
    seen = len(sink.to("bob@example.com")), len(sink.to("carol@example.com"))

    def in_app(call):  # requests go outside it: Flask-Login keeps the user in g
        with microblog.app.app_context():
            return call()

    in_app(lambda: inbox.mark_all_read(bob_id))
    with worker(microblog.app), timer_sweeper(microblog.app):
        assert alice.post("/send/bob", data={"message": "Read me"}).status_code == 302
        assert alice.post("/send/carol", data={"message": "Or not"}).status_code == 302
        wait_for(lambda: in_app(lambda: inbox.unread_count(bob_id)) == 1, 15)
        assert bob.get("/messages").status_code == 200  # Bob reads in time
        wait_for(lambda: len(sink.to("carol@example.com")) == seen[1] + 1, 15)
        # Bob's escalation was due first: it ran and sent nothing.
        wait_for(lambda: in_app(timers.pending) == [], 5)
    assert len(sink.to("bob@example.com")) == seen[0]


def test_remind_me_schedules_a_reminder_and_cancel_cancels_it(
    microblog, client_for, worker, timer_sweeper
):
    inbox, sink = microblog.notifications.inbox, microblog.mail_sink
    alice, bob = client_for("alice"), client_for("bob")
    bob_id = user_id(microblog, "bob")

    def in_app(call):  # requests go outside it: Flask-Login keeps the user in g
        with microblog.app.app_context():
            return call()

    def reminders():
        items = in_app(lambda: inbox.list(bob_id).items)
        return [i for i in items if i["event_type"] == "reminder"]

    with worker(microblog.app), timer_sweeper(microblog.app):
        in_app(lambda: inbox.mark_all_read(bob_id))
        assert alice.post("/send/bob", data={"message": "Call me back"}).status_code == 302
        kept = last_message_to(microblog, "bob")
        assert alice.post("/send/bob", data={"message": "Never mind"}).status_code == 302
        dropped = last_message_to(microblog, "bob")
        wait_for(lambda: in_app(lambda: inbox.unread_count(bob_id)) == 2, 15)
        bob.get("/messages")  # read in time: no e-mail for these two
        mails = len(sink.to("bob@example.com"))
        page = bob.post(f"/messages/{dropped}/remind", follow_redirects=True)
        assert "We will remind you of this message in 1 second." in page.get_data(as_text=True)
        bob.post(f"/messages/{kept}/remind")
        bob.post(f"/messages/{kept}/remind")  # twice: one reminder
        page = bob.post(f"/messages/{dropped}/remind/cancel", follow_redirects=True)
        assert "Reminder cancelled." in page.get_data(as_text=True)
        assert alice.post(f"/messages/{kept}/remind").status_code == 404  # not her message
        assert bob.post("/messages/999999/remind").status_code == 404
        wait_for(reminders, 15)
        wait_for(lambda: in_app(timers.pending) == [], 10)  # the e-mail escalations too
    (reminder,) = reminders()
    assert reminder["title"] == "Reminder: message from alice"
    assert reminder["body"] == "Call me back" and reminder["read"] is False
    assert len(sink.to("bob@example.com")) == mails  # read messages and reminders: no e-mail
    page = bob.post(f"/messages/{kept}/remind/cancel", follow_redirects=True)
    assert "No pending reminder for this message (already sent?)." in page.get_data(as_text=True)
    assert "Remind me" in bob.get("/messages").get_data(as_text=True)


# -- follows, throttled (issue 16) ------------------------------------------------------------


def test_follows_beyond_the_limit_come_as_one_summary(
    microblog, client_for, redis_client, worker, timer_sweeper
):
    """Limit 2 per 2 s here: bob follows alice three times (following,
    unfollowing): her pages get two follows, then one summary of the third;
    her inbox has all three."""
    alice_id = str(user_id(microblog, "alice"))
    bob = client_for("bob")
    history = RedisPubSub(redis_client)
    hub = hub_id_for("Follows")

    def streamed():
        return [json.loads(data) for _, data in history.history(hub, None).entries]

    before = len(streamed())
    inbox = microblog.notifications.inbox
    with microblog.app.app_context():
        stored = inbox.list(alice_id, per_page=100).total
    for _ in range(5):  # follow, unfollow, follow, unfollow, follow: three follows
        assert bob.post("/follow/alice").status_code == 302
    assert bob.post("/follow/nobody").status_code == 404
    assert bob.post("/follow/bob").status_code == 400
    with microblog.app.app_context(), worker(microblog.app), timer_sweeper(microblog.app):
        wait_for(lambda: len(streamed()) == before + 3, 20)
        events = streamed()[before:]
        assert [e["event_type"] for e in events] == ["follow", "follow", "summary"]
        assert all(e["recipients"] == [alice_id] for e in events)
        assert [e["title"] for e in events[:2]] == ["bob followed you"] * 2
        summary = events[2]
        assert summary["title"] == "1 more notification" and summary["count"] == 1
        assert [e["title"] for e in summary["events"]] == ["bob followed you"]
        assert inbox.list(alice_id, per_page=100).total == stored + 3  # every follow stored
    page = client_for("alice").get("/").get_data(as_text=True)
    assert 'id="follow-list"' in page and "Unfollow" not in page
    assert "Unfollow" in bob.get("/").get_data(as_text=True)


def test_settings_set_an_email_digest_and_turning_it_off_sends_it(
    microblog, client_for, worker, timer_sweeper
):
    from flask_notifications._state import get_state
    from flask_notifications.inbox.models import digest_items

    bob_id = str(user_id(microblog, "bob"))
    prefs, sink = microblog.notifications.preferences, microblog.mail_sink
    bob = client_for("bob")
    form = {"inbox:*": "on", "inbox:messages": "on", "stream:*": "on", "stream:messages": "on",
            "email:*": "on", "email:messages": "on", "digest": "daily", "digest_hour": "8",
            "digest_weekday": "0", "digest_timezone": "Europe/Paris"}  # fmt: skip

    def held():
        with get_state(microblog.app).engine.connect() as conn:
            query = select(digest_items.c.id).where(digest_items.c.recipient == bob_id)
            return conn.execute(query).all()

    try:
        assert bob.post("/settings", data=dict(form, digest_timezone="Nowhere")).status_code == 400
        with microblog.app.app_context():
            assert prefs.get(bob_id)["channels"]["email"]["digest"] is None  # nothing changed
        assert bob.post("/settings", data=form).status_code == 302
        with microblog.app.app_context():
            assert prefs.get(bob_id)["channels"]["email"]["digest"] == {
                "frequency": "daily", "hour": 8, "weekday": 0, "timezone": "Europe/Paris",
            }  # fmt: skip
        page = bob.get("/settings").get_data(as_text=True)
        assert re.search(r'value="daily"\s+selected', page)

        before = len(sink.to("bob@example.com"))
        alice = client_for("alice")
        assert alice.post("/send/bob", data={"message": "for the digest"}).status_code == 302
        with microblog.app.app_context(), worker(microblog.app), timer_sweeper(microblog.app):
            wait_for(lambda: len(held()) == 1, 15)  # held for 08:00 Paris time
            assert len(sink.to("bob@example.com")) == before
            assert bob.post("/settings", data=dict(form, digest="")).status_code == 302
            wait_for(lambda: len(sink.to("bob@example.com")) == before + 1, 15)
            wait_for(lambda: not held(), 15)
        mail = sink.to("bob@example.com")[-1]
        assert "for the digest" in mail.get_body(("plain",)).get_content()
    finally:
        with microblog.app.app_context():
            prefs.set_digest(bob_id, "email", None)
