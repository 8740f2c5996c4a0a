"""examples/simple end to end: a real `flask run` and a real `celery worker` subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from flask_notifications import Event
from flask_notifications.event_hub import hub_id_for
from flask_notifications.pubsub.redis_pubsub import RedisPubSub
from flask_notifications.testing import free_port, stop_process, wait_for_http

from .conftest import ROOT, wait_for, worker_process
from .test_pubsub import Listener

EXAMPLE = ROOT / "examples" / "simple"

pytestmark = pytest.mark.subprocess


def fetch_json(url_or_request):
    with urllib.request.urlopen(url_or_request, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def web(redis_url, tmp_path):
    port = free_port()
    env = dict(
        os.environ,
        REDIS_URL=redis_url,
        EVENTS_LOG=str(tmp_path / "events.log"),
        SYSTEM_LOG=str(tmp_path / "system.log"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(port)],
        cwd=EXAMPLE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/hubs", proc)
        yield base
    finally:
        stop_process(proc)


def test_documented_example_with_worker_subprocess(
    web, redis_url, redis_client, tmp_path, monkeypatch, smtp_server
):
    smtp = smtp_server()
    monkeypatch.setenv("EVENTS_LOG", str(tmp_path / "events.log"))
    monkeypatch.setenv("SYSTEM_LOG", str(tmp_path / "system.log"))
    monkeypatch.setenv("EMAIL_HOST", "127.0.0.1")  # worker_process passes os.environ on
    monkeypatch.setenv("EMAIL_PORT", str(smtp.port))
    hubs = fetch_json(web + "/hubs")
    assert hubs["TestHub"]["hub_id"] == hub_id_for("TestHub")
    assert hubs["TestHub"]["consumers"] == [
        "app.write_to_file",
        "flask_notifications.consumers.push_consumer.PushConsumer",
    ]
    assert hubs["SystemHub"]["consumers"] == [
        "flask_notifications.consumers.log_consumer.LogConsumer",
        "flask_notifications.consumers.push_consumer.PushConsumer",
        "flask_notifications.consumers.flaskemail_consumer.FlaskEmailConsumer",
    ]

    with (
        Listener(
            RedisPubSub(redis_client), hub_id_for("TestHub"), hub_id_for("SystemHub")
        ) as listener,
        worker_process("app:celery", redis_url, cwd=EXAMPLE) as worker,
    ):
        request = urllib.request.Request(web + "/send", method="POST")
        test_id, system_id = fetch_json(request)["sent"]
        pushed = {listener.get(15)["channel"]: None for _ in range(2)}
        events_log, system_log = tmp_path / "events.log", tmp_path / "system.log"
        wait_for(lambda: events_log.exists() and system_log.exists(), 15)
        wait_for(lambda: smtp.messages, 15)
        assert listener.empty(0.3)  # also leaves time for a second mail to show up

    assert set(pushed) == {hub_id_for("TestHub"), hub_id_for("SystemHub")}
    written = events_log.read_text().splitlines()
    assert len(written) == 1 and test_id in written[0]
    (line,) = system_log.read_text().splitlines()
    assert Event.from_json(line)["event_id"] == system_id
    # One mail, for the "system" event only, to the consumer's fixed recipient.
    (mail,) = smtp.messages
    assert smtp.envelopes == [("simple@example.com", ["ops@example.com"])]
    assert mail["To"] == "ops@example.com" and mail["From"] == "simple@example.com"
    assert mail["Subject"] == "This event will not pass the filter"
    assert mail["Message-ID"].strip().startswith(f"<{system_id}.")  # folded: a leading space
    assert "This is the body of the test" in mail.get_body(("plain",)).get_content()
    output = "".join(worker.output)
    assert "app.write_to_file" in output and "succeeded" in output
