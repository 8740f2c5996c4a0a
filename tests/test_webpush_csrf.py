"""The JS client under Flask-WTF's CSRFProtect, in headless Chromium: its
requests carry the headers given to ``FlaskNotifications.configure()`` (or to
each call), so ``enablePush()``/``disablePush()`` work with the CSRF token,
and fail clearly (a rejected promise) without it."""

from __future__ import annotations

import threading

import pytest
from flask import render_template_string, request

from . import test_webpush as base
from .conftest import wait_for
from .test_webpush import _PUSH_MANAGER_STUB

# The fixtures of test_webpush (``resolver`` is autouse: no name resolves for real).
push_app, push_service, resolver, vapid_keys = (
    base.push_app, base.push_service, base.resolver, base.vapid_keys
)  # fmt: skip

PAGE = """<!doctype html>
<meta name="csrf-token" content="{{ csrf_token() }}">
<script src="/notifications/static/flask_notifications.js"></script>
"""
TOKEN_JS = 'document.querySelector("meta[name=csrf-token]").content'


@pytest.fixture
def csrf_site(push_app):
    """``push_app`` behind Flask-WTF's CSRFProtect, served on 127.0.0.1, with
    a page that has the CSRF token in a meta tag and loads the JS client."""
    pytest.importorskip("flask_wtf")
    from flask_wtf.csrf import CSRFProtect
    from werkzeug.serving import make_server

    app = push_app[0]
    app.config["SECRET_KEY"] = "csrf-test-secret"
    CSRFProtect(app)
    app.add_url_rule("/page", "page", lambda: render_template_string(PAGE))
    polls: list[dict[str, str | None]] = []

    @app.before_request
    def record_polls() -> None:
        if request.path == "/notifications" and "since" in request.args:
            polls.append({"X-CSRFToken": request.headers.get("X-CSRFToken")})

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", push_app, polls
    server.shutdown()
    server.server_close()


def _page(chromium, base_url, subscription):
    context = chromium.new_context(extra_http_headers={"X-User": "alice"})
    context.grant_permissions(["notifications"], origin=base_url)
    context.add_init_script(_PUSH_MANAGER_STUB)
    page = context.new_page()
    page.goto(base_url + "/page")
    page.evaluate("json => { window.__push.json = json; }", subscription)
    return context, page


def test_enable_push_fails_clearly_without_the_csrf_header(chromium, csrf_site, push_service):
    base_url, (app, notifications, _, _), _ = csrf_site
    context, page = _page(chromium, base_url, push_service.browser().subscription())
    outcome = page.evaluate(
        "FlaskNotifications.enablePush().then(() => 'subscribed', e => [e.message, e.status])"
    )
    message, status = outcome
    assert status == 400
    assert message.startswith("POST /notifications/push-subscriptions: 400")
    assert "The CSRF token is missing." in message and "<" not in message  # no HTML
    with app.app_context():
        assert notifications.push_subscriptions.all() == []
    context.close()


def test_configured_headers_carry_the_csrf_token(chromium, csrf_site, push_service):
    base_url, (app, notifications, _, _), polls = csrf_site
    browser = push_service.browser()
    context, page = _page(chromium, base_url, browser.subscription())
    token = page.evaluate(TOKEN_JS)
    assert token
    configured = page.evaluate(
        f'FlaskNotifications.configure({{headers: {{"X-CSRFToken": {TOKEN_JS}}}}})'
    )
    assert configured == {"headers": {"X-CSRFToken": token}}

    assert (
        page.evaluate("FlaskNotifications.enablePush().then(s => s.endpoint)") == browser.endpoint
    )
    with app.app_context():
        (stored,) = notifications.push_subscriptions.for_users(["alice"])
        assert stored.endpoint == browser.endpoint

    # The polling fallback sends them too (EventSource cannot send headers).
    page.evaluate('window.__conn = FlaskNotifications.connect({hub: "Alerts", forcePolling: true})')
    assert wait_for(lambda: polls) == [{"X-CSRFToken": token}]
    page.evaluate("window.__conn.close()")

    assert page.evaluate("FlaskNotifications.disablePush()") is True
    with app.app_context():
        assert notifications.push_subscriptions.all() == []
    context.close()


def test_headers_per_call_and_as_a_function(chromium, csrf_site, push_service):
    base_url, (app, notifications, _, _), _ = csrf_site
    browser = push_service.browser()
    context, page = _page(chromium, base_url, browser.subscription())
    endpoint = page.evaluate(
        "FlaskNotifications.enablePush({headers: () => ({'X-CSRFToken': "
        f"{TOKEN_JS}}})}}).then(s => s.endpoint)"
    )
    assert endpoint == browser.endpoint
    # disablePush without the token: the server refuses; the browser still
    # unsubscribes, and the promise rejects saying why.
    message = page.evaluate("FlaskNotifications.disablePush().then(() => 'ok', e => e.message)")
    assert "400" in message and "CSRF token is missing" in message
    with app.app_context():
        assert len(notifications.push_subscriptions.all()) == 1
    context.close()
