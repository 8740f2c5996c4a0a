"""The inbox widget: ``{{ notifications_inbox() }}`` and ``<flask-notifications-inbox>``.

The Jinja global with Flask's test request contexts; the element in headless
Chromium against the real stack: ``tests/widget_app.py`` served by gevent in a
subprocess, a real Celery worker (in a thread of this process, on the same
app module), Redis and an SQLite inbox shared by both processes.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from flask import render_template_string

from flask_notifications import Event, Notifications, _widget
from flask_notifications.consumers import StoreConsumer
from flask_notifications.errors import ConfigurationError
from flask_notifications.testing import free_port, stop_process, wait_for_http

from .conftest import ROOT

# -- the Jinja global ---------------------------------------------------------------------


class _Tags(HTMLParser):
    """Every start tag of a document, with its attributes unescaped."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


@pytest.fixture
def inbox_app(make_app, tmp_path):
    app = make_app(NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}")
    notifications = Notifications(app)
    notifications.create_hub("Alerts")
    notifications.create_hub("Inbox").register_consumer(StoreConsumer())

    @notifications.identity_loader
    def identity():
        from flask import request

        return request.headers.get("X-User")

    return app, notifications


def test_the_global_renders_the_element_with_escaped_options(inbox_app):
    app, notifications = inbox_app
    with app.app_context():
        notifications.inbox.store(Event(None, "message", "t", "b", recipients=['al"i<ce']))
        notifications.inbox.store(Event(None, "message", "u", "b", recipients=['al"i<ce']))
    url = '/settings?a=1&b="><script>alert(1)</script>'
    labels = {"bell": "Cloche <b>\"'&", "othersMany": "{actor} et {n} autres"}
    template = (
        "{{ notifications_inbox(preferences_url=url, labels=labels, page_size=7, theme='dark',"
        " align='start', headers={'X-CSRFToken': 'a\"b<'}, types=['comment', 'like'],"
        " poll_interval=2.5) }}"
    )
    with app.test_request_context(headers={"X-User": 'al"i<ce'}):
        html = render_template_string(template, url=url, labels=labels)
    assert "<script>alert" not in html and 'b="><' not in html
    tags = _tags(html)
    scripts = [attrs["src"] for tag, attrs in tags if tag == "script"]
    assert scripts == [
        "/notifications/static/flask_notifications.js",
        "/notifications/static/flask_notifications_inbox.js",
    ]
    (widget,) = [attrs for tag, attrs in tags if tag == "flask-notifications-inbox"]
    assert widget == {
        "hub": "Inbox",  # the hub with a StoreConsumer
        "prefix": "/notifications",
        "page-size": "7",
        "theme": "dark",
        "align": "start",
        "poll-interval": "2500",
        "preferences-url": url,
        "labels": json.dumps(labels, separators=(",", ":"), ensure_ascii=False),
        "headers": '{"X-CSRFToken":"a\\"b<"}',
        "types": "comment like",
        "unread": "2",  # that user's unread count, from the inbox
    }


def test_the_global_writes_the_client_once_and_nothing_for_anonymous_visitors(inbox_app):
    app, _ = inbox_app
    template = "{{ notifications_script() }}{{ notifications_inbox() }}{{ notifications_inbox() }}"
    with app.test_request_context(headers={"X-User": "bob"}):
        html = render_template_string(template)
    assert html.count("flask_notifications.js") == 1
    assert html.count("flask_notifications_inbox.js") == 1
    assert html.count("<flask-notifications-inbox ") == 2
    widget = [attrs for tag, attrs in _tags(html) if tag == "flask-notifications-inbox"][0]
    assert "preferences-url" not in widget and "labels" not in widget
    assert widget["unread"] == "0" and widget["theme"] == "light" and widget["page-size"] == "10"
    with app.test_request_context():
        assert render_template_string("{{ notifications_inbox() }}") == ""
    with app.test_request_context(headers={"X-User": "bob"}):
        no_scripts = render_template_string("{{ notifications_inbox(scripts=False, unread=4) }}")
    assert "<script" not in no_scripts and 'unread="4"' in no_scripts


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"page_size": 0}, "page_size must be an integer from 1 to 100"),
        ({"page_size": 101}, "page_size must be an integer from 1 to 100"),
        ({"theme": "pink"}, "theme must be one of light, dark, auto"),
        ({"align": "middle"}, "align must be one of start, end"),
        ({"labels": {"nope": "x"}}, "labels: unknown key 'nope'"),
        ({"labels": {"bell": 3}}, "labels must map strings to strings"),
        ({"headers": ["X-CSRF"]}, "headers must be a mapping of strings"),
        ({"types": "comment"}, "types must be a list of event types"),
        ({"types": ["a b"]}, "'a b' is not an event type"),
        ({"poll_interval": 0}, "poll_interval must be a number of seconds"),
        ({"hub": "Nope"}, "no hub is labelled 'Nope'"),
        ({"preferences_url": ""}, "preferences_url must be a non-empty string"),
        ({"unread": -1}, "unread must be an integer >= 0"),
    ],
)
def test_bad_options_are_clear_errors(inbox_app, options, message):
    app, _ = inbox_app
    with app.test_request_context(headers={"X-User": "bob"}):
        with pytest.raises(ConfigurationError, match=message):
            render_template_string("{{ notifications_inbox(**options) }}", options=options)


def test_the_global_needs_a_hub_to_stream_and_exists_per_app(make_app):
    app = make_app()
    assert "notifications_inbox" not in app.jinja_env.globals  # nothing at import
    notifications = Notifications(app)
    assert "notifications_inbox" in app.jinja_env.globals
    notifications.create_hub("Plain")  # no StoreConsumer: no unread counts
    with app.test_request_context():
        with pytest.raises(ConfigurationError, match="needs a hub with a StoreConsumer"):
            render_template_string("{{ notifications_inbox() }}")
    assert "notifications_inbox" not in make_app().jinja_env.globals


def test_the_global_needs_the_blueprint(make_app):
    app = make_app(NOTIFICATIONS_REGISTER_BLUEPRINT=False)
    Notifications(app).create_hub("Inbox").register_consumer(StoreConsumer())
    with app.test_request_context(), pytest.raises(RuntimeError, match="blueprint"):
        render_template_string("{{ notifications_inbox() }}")


# -- the default texts in the request's locale ----------------------------------------------

FRENCH = {
    "bell": "Notifications",  # the same word in French
    "heading": "Notifications",
    "unread": "non lues : {n}",
    "empty": "Aucune notification pour l’instant.",
    "loading": "Chargement…",
    "error": "Les notifications n’ont pas pu être chargées.",
    "loadMore": "Voir plus",
    "markRead": "Marquer comme lu",
    "markAllRead": "Tout marquer comme lu",
    "preferences": "Paramètres des notifications",
    "unreadItem": "Non lu :",
    "othersOne": "{actor} et 1 autre",
    "othersMany": "{actor} et {n} autres",
}


def _labels(app, locale=None, template="{{ notifications_inbox() }}", **context):
    """The ``labels`` of the element rendered for bob (``None``: no attribute)."""
    headers = {"X-User": "bob", **({"X-Locale": locale} if locale else {})}
    with app.test_request_context(headers=headers):
        html = render_template_string(template, **context)
    (widget,) = [attrs for tag, attrs in _tags(html) if tag == "flask-notifications-inbox"]
    return json.loads(widget["labels"]) if "labels" in widget else None


@pytest.fixture
def babel_inbox_app(inbox_app):
    """``inbox_app`` with Flask-Babel, the locale from the request's X-Locale header."""
    from flask import request
    from flask_babel import Babel

    app, _ = inbox_app
    Babel(app, locale_selector=lambda: request.headers.get("X-Locale"))
    return app


def test_the_default_texts_come_in_the_request_locale(babel_inbox_app):
    assert _labels(babel_inbox_app, "fr") == FRENCH
    assert _labels(babel_inbox_app, "fr_FR") == FRENCH
    english = _widget._DEFAULT_LABELS
    assert _labels(babel_inbox_app, "en") == english
    assert _labels(babel_inbox_app) == english  # Flask-Babel's default locale: en
    assert _labels(babel_inbox_app, "de") == english  # no catalog for German
    assert english["markAllRead"] == "Mark all read" and english["unread"] == "{n} unread"


def test_explicit_labels_win_over_the_translations(babel_inbox_app):
    template = "{{ notifications_inbox(labels=labels) }}"
    mine = {"markAllRead": "Tout lire", "othersMany": "{actor} + {n}"}
    assert _labels(babel_inbox_app, "fr", template, labels=mine) == {**FRENCH, **mine}
    assert _labels(babel_inbox_app, "en", template, labels=mine) == {
        **_widget._DEFAULT_LABELS,
        **mine,
    }


def test_without_flask_babel_the_texts_stay_english(inbox_app):
    app, _ = inbox_app
    assert "babel" not in app.extensions
    assert _labels(app, "fr") is None


def test_the_translations_keep_their_placeholders(inbox_app, tmp_path, caplog):
    """``{n}`` and ``{actor}`` survive translation (the element fills them);
    an entry of the app's catalog that drops or adds one is not used."""
    from babel.messages import mofile
    from babel.messages.catalog import Catalog
    from flask import request
    from flask_babel import Babel

    for key, text in FRENCH.items():
        english = _widget._DEFAULT_LABELS[key]
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", english)), key
    assert "{n}" in FRENCH["unread"] and "{n}" in FRENCH["othersMany"]
    # The app's own catalog comes first: one good entry, two broken ones.
    catalog = Catalog(locale="fr")
    catalog.add("Mark all read", "Tout lire")
    catalog.add("{n} unread", "non lues")  # lost its {n}
    catalog.add("Load more", "Plus ({n})")  # a {n} nobody fills
    (tmp_path / "fr" / "LC_MESSAGES").mkdir(parents=True)
    with open(tmp_path / "fr" / "LC_MESSAGES" / "messages.mo", "wb") as out:
        mofile.write_mo(out, catalog)
    app, _ = inbox_app
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(tmp_path)
    Babel(app, locale_selector=lambda: request.headers.get("X-Locale"))
    with caplog.at_level("WARNING", "flask_notifications"):
        labels = _labels(app, "fr")
    assert labels["unread"] == "{n} unread" and labels["loadMore"] == "Load more"  # English
    assert labels["markAllRead"] == "Tout lire"  # the app's
    assert labels["markRead"] == "Marquer comme lu"  # the package's
    assert caplog.text.count("changes its {placeholders}") == 2


def test_the_python_defaults_are_the_elements_defaults():
    """The msgids are the ``LABELS`` of flask_notifications_inbox.js."""
    source = (ROOT / "flask_notifications" / "static" / "flask_notifications_inbox.js").read_text()
    block = re.search(r"var LABELS = \{(.*?)\};", source, re.S).group(1)
    labels = {
        key: json.loads(value)
        for key, value in re.findall(r'^\s*(\w+): ("(?:[^"\\]|\\.)*"),$', block, re.M)
    }
    assert labels == _widget._DEFAULT_LABELS
    assert set(labels) == _widget.WIDGET_LABELS


# -- in the browser, against the real stack ---------------------------------------------------

SHADOW = "document.querySelector('flask-notifications-inbox').shadowRoot"
WIDGET = "document.querySelector('flask-notifications-inbox')"
TITLES = f"[...{SHADOW}.querySelectorAll('.item .item-title')].map(e => e.textContent)"
_BADGE = f"{SHADOW}.querySelector('.badge')"
BADGE = f"({_BADGE}.hidden ? '' : {_BADGE}.textContent)"
ACTIVE = f"{SHADOW}.activeElement"
_users = itertools.count()


class WidgetStack:
    def __init__(self, base: str, module) -> None:
        self.base = base
        self.module = module

    def store(self, user: str, *titles: str) -> None:
        """Store notifications for ``user`` straight into the inbox (set-up)."""
        with self.module.app.app_context():
            for title in titles:
                event = Event(None, "message", title, f"body of {title}", recipients=[user])
                self.module.notifications.inbox.store(event)

    def send(self, user: str, title: str, **fields) -> None:
        """Send an event through the hub: the worker stores it and pushes the count."""
        with self.module.app.app_context():
            event = Event(None, "message", title, "live", recipients=[user], **fields)
            self.module.notifications.send(event)

    def store_event(self, user: str, title: str, **fields) -> None:
        """Store one event for ``user`` straight into the inbox (set-up)."""
        with self.module.app.app_context():
            event = Event(None, "message", title, "b", recipients=[user], **fields)
            self.module.notifications.inbox.store(event)

    def unread(self, user: str) -> int:
        with self.module.app.app_context():
            return self.module.notifications.inbox.unread_count(user)

    def items(self, user: str) -> list[dict]:
        with self.module.app.app_context():
            return self.module.notifications.inbox.list(user, per_page=100).items


@pytest.fixture(scope="module")
def widget_stack(redis_server, tmp_path_factory):
    """``tests/widget_app.py`` served by gevent in a subprocess, the same module
    imported here for a Celery worker thread and for reading the inbox."""
    database = tmp_path_factory.mktemp("widget") / "inbox.sqlite"
    env = {"REDIS_URL": redis_server.url, "DATABASE_URI": f"sqlite:///{database}"}
    celery = Celery("widget-tests")  # Flask-CeleryExt configures Celery's current app
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        spec = importlib.util.spec_from_file_location("widget_app", ROOT / "tests/widget_app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    with module.app.app_context():
        module.notifications.inbox.create_tables()  # before two processes race to
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "serve.py"), "widget_app:app", str(port)],
        cwd=ROOT / "tests", env=dict(os.environ, PYTHONPATH=str(ROOT), **env),
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/health", web)
        with start_worker(
            module.notifications.celery,
            pool="solo",
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=10,
        ):
            yield WidgetStack(base, module)
    finally:
        stop_process(web)
        celery.close()


def _user() -> str:
    return f"user{next(_users)}"


def _open(chromium, stack, user, query="", init_script=None, stream=True):
    """A page of the widget app as ``user``, once the widget's stream is open."""
    context = chromium.new_context()
    host = urlsplit(stack.base).hostname
    context.add_cookies([{"name": "user", "value": user, "domain": host, "path": "/"}])
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    if stream:
        with page.expect_response(lambda r: "/notifications/stream/Inbox" in r.url):
            page.goto(stack.base + "/page" + query)
    else:
        page.goto(stack.base + "/page" + query)
    page.wait_for_function(f"{WIDGET}.connection !== null")
    return context, page


def _titles(page):
    return page.evaluate(TITLES)


def test_open_page_mark_one_and_all_read(chromium, widget_stack, artifacts_dir):
    user = _user()
    widget_stack.store(user, "n1", "n2", "n3", "n4", "n5")
    context, page = _open(chromium, widget_stack, user)
    assert page.evaluate(BADGE) == "5"  # rendered by the server, then confirmed
    bell = page.locator("flask-notifications-inbox .bell")
    assert bell.get_attribute("aria-expanded") == "false"
    assert bell.get_attribute("aria-label") == "Notifications, 5 unread"
    assert page.locator("flask-notifications-inbox .panel").is_hidden()

    bell.click()
    assert bell.get_attribute("aria-expanded") == "true"
    page.wait_for_function(f"{TITLES}.length === 3")
    assert _titles(page) == ["n5", "n4", "n3"]  # newest first, page_size=3
    prefs = page.locator("flask-notifications-inbox .prefs")
    assert prefs.is_visible() and prefs.get_attribute("href") == "/settings?tab=notifications"

    page.click("flask-notifications-inbox .more")
    page.wait_for_function(f"{TITLES}.length === 5")
    assert _titles(page) == ["n5", "n4", "n3", "n2", "n1"]
    assert page.locator("flask-notifications-inbox .more").is_hidden()  # the last page

    # Mark one read (the request carries the CSRF header of the headers option).
    page.click("flask-notifications-inbox .item:nth-child(2) .read")
    page.wait_for_function(f"{BADGE} === '4'")
    by_title = {item["title"]: item for item in widget_stack.items(user)}
    assert by_title["n4"]["read"] is True and by_title["n5"]["read"] is False
    assert widget_stack.unread(user) == 4
    second = page.locator("flask-notifications-inbox .item:nth-child(2)")
    assert "unread" not in second.get_attribute("class")
    assert second.locator(".read").count() == 0

    page.click("flask-notifications-inbox .mark-all")
    page.wait_for_function(f"{BADGE} === ''")
    assert widget_stack.unread(user) == 0
    page.wait_for_function(f"{SHADOW}.querySelectorAll('.item.unread').length === 0")
    assert page.locator("flask-notifications-inbox .item").count() == 5
    assert bell.get_attribute("aria-label") == "Notifications"
    page.screenshot(path=str(artifacts_dir / "widget-open.png"))
    context.close()


def test_roles_and_attributes(chromium, widget_stack):
    user = _user()
    widget_stack.store(user, "a", "b")
    context, page = _open(chromium, widget_stack, user)
    page.click("flask-notifications-inbox .bell")
    page.wait_for_function(f"{TITLES}.length === 2")
    report = page.evaluate(
        f"""() => {{
        const root = {SHADOW};
        const bell = root.querySelector('button.bell');
        const panel = root.getElementById(bell.getAttribute('aria-controls'));
        const heading = root.getElementById(panel.getAttribute('aria-labelledby'));
        const list = root.querySelector('ul');
        const live = root.querySelector('[aria-live]');
        const items = [...list.children];
        const controls = [...root.querySelectorAll('button, a[href]')];
        return {{
          haspopup: bell.getAttribute('aria-haspopup'),
          bellName: bell.getAttribute('aria-label'),
          badgeHidden: root.querySelector('.badge').getAttribute('aria-hidden'),
          panelRole: panel.getAttribute('role'),
          heading: heading.textContent,
          listRole: list.getAttribute('role'),
          listName: root.getElementById(list.getAttribute('aria-labelledby')).textContent,
          itemRoles: items.map(li => li.getAttribute('role')),
          tabStops: items.map(li => li.tabIndex),
          live: [live.getAttribute('aria-live'), live.getAttribute('role')],
          unnamed: controls.filter(c => !(c.getAttribute('aria-label') || c.textContent.trim()))
            .length,
          readNames: items.map(li => li.querySelector('.read').getAttribute('aria-label')),
          svgHidden: bell.querySelector('svg').getAttribute('aria-hidden'),
        }};
      }}"""
    )
    assert report == {
        "haspopup": "dialog",
        "bellName": "Notifications, 2 unread",
        "badgeHidden": "true",  # the name carries the count; the badge is decoration
        "panelRole": "dialog",
        "heading": "Notifications",
        "listRole": "list",
        "listName": "Notifications",
        "itemRoles": ["listitem", "listitem"],
        "tabStops": [0, -1],  # roving focus: one item in the Tab order
        "live": ["polite", "status"],
        "unnamed": 0,
        "readNames": ["Mark read: b", "Mark read: a"],
        "svgHidden": "true",
    }
    context.close()


def test_live_update_from_a_second_browser(chromium, widget_stack):
    alice, bob = _user(), _user()
    alice_context, page = _open(chromium, widget_stack, alice)
    bob_context, bob_page = _open(chromium, widget_stack, bob)
    page.evaluate("window.notReloaded = true")
    page.click("flask-notifications-inbox .bell")
    page.wait_for_function(
        f"{SHADOW}.querySelector('.status').textContent === 'No notifications yet.'"
    )
    assert page.evaluate(BADGE) == ""

    def compose(title):
        bob_page.evaluate(
            """([to, title]) => fetch('/compose', {method: 'POST',
                 headers: {'Content-Type': 'application/json'},
                 body: JSON.stringify({to, title})}).then(r => r.status)""",
            [alice, title],
        )

    compose("Hello from bob")  # the worker stores it; the stream brings the count
    page.wait_for_function(f"{BADGE} === '1'", timeout=15000)
    page.wait_for_function(f"{TITLES}.join() === 'Hello from bob'", timeout=5000)
    assert page.evaluate(f"{SHADOW}.querySelector('.status').hidden") is True

    page.keyboard.press("Escape")  # closed: the list is reloaded when opened again
    compose("Second")
    page.wait_for_function(f"{BADGE} === '2'", timeout=15000)
    page.click("flask-notifications-inbox .bell")
    page.wait_for_function(f"{TITLES}.join() === 'Second,Hello from bob'", timeout=5000)
    assert page.evaluate("window.notReloaded") is True
    assert page.evaluate(f"{SHADOW}.querySelector('[aria-live]').textContent") == (
        "Notifications, 2 unread"
    )
    assert bob_page.evaluate(BADGE) == ""  # bob's inbox is untouched

    # Read in another tab of alice's: this page's badge follows.
    other = alice_context.new_page()
    other.goto(widget_stack.base + "/page")
    other.wait_for_function(f"{BADGE} === '2'")
    other.click("flask-notifications-inbox .bell")
    other.wait_for_function(f"{TITLES}.length === 2")
    other.click("flask-notifications-inbox .mark-all")
    page.wait_for_function(f"{BADGE} === ''", timeout=5000)
    page.wait_for_function(f"{SHADOW}.querySelectorAll('.item.unread').length === 0", timeout=5000)
    alice_context.close()
    bob_context.close()


ACTORS = f"[...{SHADOW}.querySelectorAll('.item')].map(li => li.textContent)"


def test_a_grouped_item_is_one_item_updated_in_place(chromium, widget_stack, artifacts_dir):
    """Grouping (docs/workflows.rst): one inbox item per group, with count and
    actors; the widget shows it as one and replaces it when the group grows."""
    user = _user()
    widget_stack.store_event(user, "plain one")
    for sender in ("bob", "carol", "bob"):
        widget_stack.store_event(user, f"{sender} commented", group="post:1", sender=sender)
    context, page = _open(chromium, widget_stack, user)
    assert page.evaluate(BADGE) == "2"  # the group is one unread item
    page.click("flask-notifications-inbox .bell")
    page.wait_for_function(f"{TITLES}.length === 2")
    assert _titles(page) == ["bob commented", "plain one"]
    grouped = page.locator("flask-notifications-inbox .item").first
    assert grouped.locator(".actors").inner_text() == "bob and 1 other"  # two distinct people
    assert grouped.locator(".count").inner_text() == "3"  # three comments
    assert page.locator("flask-notifications-inbox .item").nth(1).locator(".actors").count() == 0

    # A new comment, through the worker, while the dropdown is open: the same
    # item, updated in place, still first; no second item for the group.
    widget_stack.send(user, "dave commented", group="post:1", sender="dave")
    page.wait_for_function(f"{ACTORS}[0].includes('dave and 2 others')", timeout=15000)
    assert _titles(page) == ["dave commented", "plain one"]
    assert grouped.locator(".count").inner_text() == "4"
    assert page.evaluate(BADGE) == "2"
    page.screenshot(path=str(artifacts_dir / "widget-grouped.png"))

    # Read, the group starts again: a new comment is a new item of its own.
    page.click("flask-notifications-inbox .item:first-child .read")
    page.wait_for_function(f"{BADGE} === '1'")
    widget_stack.send(user, "erin commented", group="post:1", sender="erin")
    page.wait_for_function(f"{TITLES}.length === 3", timeout=15000)
    assert _titles(page) == ["erin commented", "dave commented", "plain one"]
    assert page.locator("flask-notifications-inbox .item").first.locator(".actors").count() == 0
    context.close()


NO_EVENTSOURCE = "delete window.EventSource;"


def test_polling_fallback_without_eventsource(chromium, widget_stack):
    user = _user()
    context, page = _open(chromium, widget_stack, user, init_script=NO_EVENTSOURCE, stream=False)
    assert page.evaluate(f"{WIDGET}.connection.polling") is True
    page.click("flask-notifications-inbox .bell")
    page.wait_for_function(f"{SHADOW}.querySelector('.status').textContent !== 'Loading\u2026'")
    widget_stack.send(user, "Polled")  # stored by the worker, found by the next poll
    page.wait_for_function(f"{BADGE} === '1'", timeout=15000)
    page.wait_for_function(f"{TITLES}.join() === 'Polled'", timeout=5000)
    page.click("flask-notifications-inbox .read")
    page.wait_for_function(f"{BADGE} === ''")
    assert widget_stack.unread(user) == 0

    # Read in another tab (polling too): this page's badge and open list follow,
    # from the count the widget asks at each poll.
    widget_stack.send(user, "Second")
    page.wait_for_function(f"{BADGE} === '1'", timeout=15000)
    page.wait_for_function(f"{TITLES}.join() === 'Second,Polled'", timeout=5000)
    other = context.new_page()
    other.goto(widget_stack.base + "/page")
    other.wait_for_function(f"{WIDGET}.connection && {WIDGET}.connection.polling")
    other.click("flask-notifications-inbox .bell")
    other.wait_for_function(f"{TITLES}.length === 2")
    other.click("flask-notifications-inbox .mark-all")
    page.wait_for_function(f"{BADGE} === ''", timeout=5000)
    page.wait_for_function(f"{SHADOW}.querySelectorAll('.item.unread').length === 0")
    assert widget_stack.unread(user) == 0
    context.close()


def test_keyboard(chromium, widget_stack):
    user = _user()
    widget_stack.store(user, "k1", "k2", "k3")
    context, page = _open(chromium, widget_stack, user)
    page.focus("#before")
    page.keyboard.press("Tab")
    assert page.evaluate(f"document.activeElement === {WIDGET}")
    assert page.evaluate(f"{ACTIVE}.classList.contains('bell')")

    page.keyboard.press("Enter")
    page.wait_for_function(f"{ACTIVE} && {ACTIVE}.dataset.id !== undefined")  # the first item
    bell = page.locator("flask-notifications-inbox .bell")
    assert bell.get_attribute("aria-expanded") == "true"
    focused = f"{ACTIVE}.querySelector('.item-title').textContent"
    assert page.evaluate(focused) == "k3"
    page.keyboard.press("ArrowDown")
    assert page.evaluate(focused) == "k2"
    page.keyboard.press("End")
    assert page.evaluate(focused) == "k1"
    page.keyboard.press("ArrowDown")  # stays on the last
    assert page.evaluate(focused) == "k1"
    page.keyboard.press("Home")
    assert page.evaluate(focused) == "k3"
    page.keyboard.press("ArrowUp")
    assert page.evaluate(focused) == "k3"
    # Tab reaches the focused item's "Mark read"; Enter marks it, focus stays on the item.
    page.keyboard.press("Tab")
    assert page.evaluate(f"{ACTIVE}.getAttribute('aria-label')") == "Mark read: k3"
    page.keyboard.press("Enter")
    page.wait_for_function(f"{BADGE} === '2'")
    page.wait_for_function(f"{ACTIVE} && {ACTIVE}.classList.contains('item')")
    assert page.evaluate(focused) == "k3"

    page.keyboard.press("Escape")
    assert page.locator("flask-notifications-inbox .panel").is_hidden()
    assert bell.get_attribute("aria-expanded") == "false"
    assert page.evaluate(f"{ACTIVE}.classList.contains('bell')")
    # ArrowDown on the bell opens it too; Escape from the panel returns to the bell.
    page.keyboard.press("ArrowDown")
    page.wait_for_function(f"{ACTIVE} && {ACTIVE}.dataset.id !== undefined")
    page.keyboard.press("Escape")
    assert page.evaluate(f"{ACTIVE}.classList.contains('bell')")
    context.close()


def test_defaults_without_options_and_nothing_for_anonymous(chromium, widget_stack):
    user = _user()
    context, page = _open(chromium, widget_stack, user, query="?bare=1")
    page.click("flask-notifications-inbox .bell")
    page.wait_for_function(
        f"{SHADOW}.querySelector('.status').textContent === 'No notifications yet.'"
    )
    assert page.locator("flask-notifications-inbox .prefs").is_hidden()  # no preferences_url
    # Clicking elsewhere closes it, without taking the focus back to the bell.
    page.click("main")
    assert page.locator("flask-notifications-inbox .panel").is_hidden()
    context.close()
    anonymous = chromium.new_context()
    page = anonymous.new_page()
    page.goto(widget_stack.base + "/page")
    assert page.locator("flask-notifications-inbox").count() == 0
    anonymous.close()
