"""The JS client in real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlsplit

import pytest

from flask_notifications import Event
from flask_notifications.event_hub import hub_id_for
from flask_notifications.pubsub.redis_pubsub import RedisPubSub

from .conftest import ROOT

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        if os.environ.get("FLASK_NOTIFICATIONS_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (run-tests.sh installs it with apt-get)")
        pytest.skip("no chromium on PATH")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_js_client_receives_events_and_updates_the_badge(browser, stream_base, redis_client):
    host = urlsplit(stream_base).hostname
    context = browser.new_context()
    context.add_cookies([{"name": "user", "value": "alice", "domain": host, "path": "/"}])
    page = context.new_page()
    page.goto(stream_base + "/page")
    page.wait_for_function("window.conn !== undefined")
    page.wait_for_timeout(300)  # the EventSource connects

    publisher = RedisPubSub(redis_client)
    inbox = hub_id_for("Inbox")
    publisher.publish(
        inbox, Event(None, "message", "not for alice", "b", recipients=["bob"]).to_json()
    )
    publisher.publish(
        inbox, Event(None, "message", "Hello Alice", "b", recipients=["alice"]).to_json()
    )
    page.wait_for_selector("#events li")
    assert page.inner_text("#events") == "message: Hello Alice"

    assert page.eval_on_selector("#badge", "el => getComputedStyle(el).visibility") == "hidden"
    publisher.publish(
        inbox, Event(None, "unread_count", "", "", recipients=["alice"], unread=3).to_json()
    )
    page.wait_for_function("document.getElementById('badge').textContent === '3'")
    assert page.eval_on_selector("#badge", "el => getComputedStyle(el).visibility") == "visible"
    publisher.publish(
        inbox, Event(None, "unread_count", "", "", recipients=["alice"], unread=0).to_json()
    )
    page.wait_for_function(
        "getComputedStyle(document.getElementById('badge')).visibility === 'hidden'"
    )

    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "browser-js-client.png"))
    assert page.evaluate("window.received.length") == 1
    context.close()
