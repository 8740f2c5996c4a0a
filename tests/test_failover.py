"""Redis Sentinel: every client follows the master, and a master SIGKILLed
during a burst of sends loses no acknowledged event, for the consumers and
for 200 open streams, and duplicates none on the streams."""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time

import pytest
import redis

from flask_notifications import Event, Notifications, NotificationsUnavailable

from .conftest import ROOT, wait_for, worker_process
from .sse_client import SSEClient

pytestmark = pytest.mark.subprocess

SENDS = 2000
STREAMS = 200
KILL_AT = 600


def test_a_sentinel_url_reaches_the_master_and_configures_the_celery_broker(
    make_app, redis_sentinel
):
    app = make_app(NOTIFICATIONS_REDIS_URL=redis_sentinel.url)
    notifications = Notifications(app)
    client = notifications.redis
    assert client.connection_pool.get_master_address()[1] == redis_sentinel.master.port
    client.set("flask_notifications:probe", "1")
    with redis_sentinel.replica.client() as replica:
        wait_for(lambda: replica.get("flask_notifications:probe") == b"1")
    conf = notifications.celery.conf
    sentinels = [f"sentinel://127.0.0.1:{s.port}/0" for s in redis_sentinel.sentinels]
    assert conf.broker_url == ";".join(sentinels)
    assert conf.broker_transport_options["master_name"] == "mymaster"


class Collector(threading.Thread):
    """Reads one stream until stopped: its events' ids, and anything odd."""

    def __init__(self, client: SSEClient) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.ids: list[str] = []
        self.odd: list[str] = []  # reset events, a stream that ended
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                event = self.client.next_event(timeout=0.5)
            except (TimeoutError, OSError):
                continue
            if event is None:
                self.odd.append("the stream ended")
                return
            if event["event"] != "message":
                self.odd.append(event["event"])
                continue
            self.ids.append(json.loads(event["data"])["event_id"])


def load_app(url, log, monkeypatch):
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("LOG", str(log))
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    sys.modules.pop("failover_app", None)
    return importlib.import_module("failover_app")


def test_a_master_killed_during_a_burst_loses_no_acknowledged_event(
    redis_sentinel, stream_server, tmp_path, monkeypatch, celery_app
):
    url = redis_sentinel.url
    log = tmp_path / "consumed.log"
    module = load_app(url, log, monkeypatch)
    base = stream_server(REDIS_URL=url)
    users = [f"u{i}" for i in range(STREAMS)]
    collectors = {}
    with worker_process("failover_app:celery", url, cwd=ROOT / "tests") as worker:
        for user in users:
            client = SSEClient(f"{base}/notifications/stream/Inbox", {"X-User": user})
            assert client.status == 200
            client.wait_ready()
            collectors[user] = Collector(client)
            collectors[user].start()
        acknowledged: dict[str, str | None] = {}  # event id -> its recipient (None: everyone)
        refused = 0
        old_port = None
        started = time.monotonic()
        with module.app.app_context():
            for i in range(SENDS):
                if i == KILL_AT:
                    old_port = redis_sentinel.kill_master().port
                user = users[i % STREAMS] if i % 10 else None
                event = Event(None, "message", f"n{i}", "", recipients=[user] if user else None)
                try:
                    acknowledged[module.notifications.send(event)["event_id"]] = user
                except NotificationsUnavailable:
                    refused += 1
        burst = time.monotonic() - started
        new_master = redis_sentinel.wait_for_failover(old_port)

        def consumed():
            return set(log.read_text().split()) if log.exists() else set()

        def expected(user):
            return {e for e, to in acknowledged.items() if to in (None, user)}

        def complete():
            return set(acknowledged) <= consumed() and all(
                expected(u) <= set(c.ids) for u, c in collectors.items()
            )

        try:
            wait_for(complete, 90, 0.25)
        except AssertionError:
            lost = set(acknowledged) - consumed()
            short = {u: len(expected(u) - set(c.ids)) for u, c in collectors.items()}
            short = {u: n for u, n in short.items() if n}
            raise AssertionError(
                f"{len(lost)} acknowledged events never consumed; streams missing events: "
                f"{short}; worker log:\n" + "".join(worker.output[-30:])
            ) from None
        time.sleep(1.0)  # room for a late duplicate
    for collector in collectors.values():
        collector.stopped.set()
    for collector in collectors.values():
        collector.join(5)
        collector.client.close()
    assert new_master.port != old_port
    assert len(acknowledged) + refused == SENDS and len(acknowledged) >= SENDS - 10
    for user, collector in collectors.items():
        assert not collector.odd, (user, collector.odd)  # no reset, no stream cut
        assert len(collector.ids) == len(set(collector.ids)), user  # no duplicate
    print(f"burst of {SENDS} sends in {burst:.1f}s, {refused} refused")  # noqa: T201


def test_the_library_client_finds_the_new_master(redis_sentinel, make_app):
    notifications = Notifications(make_app(NOTIFICATIONS_REDIS_URL=redis_sentinel.url))
    client = notifications.redis
    client.set("flask_notifications:before", "1")
    old = redis_sentinel.kill_master().port
    redis_sentinel.wait_for_failover(old)

    def write():
        try:
            return client.set("flask_notifications:after", "1")
        except redis.ConnectionError:
            return False

    wait_for(write, 15, 0.1)
    assert client.connection_pool.get_master_address()[1] != old
