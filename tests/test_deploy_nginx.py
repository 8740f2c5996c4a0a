"""The documented deployment, for real: nginx (examples/deploy/nginx.conf, the
file docs/deploying.rst shows) in front of two ``gunicorn -k gevent``
processes serving ``examples.deploy.app:create_app()`` with
examples/deploy/gunicorn.conf.py, a real Redis, and a real Celery worker
(``celery -A examples.deploy.celery_app:celery``) running the push consumers.

2,000 clients (a gevent load client in a subprocess, tests/deploy_load.py)
connect from eight loopback addresses. Each signs in and opens the private
``Inbox`` hub, and opens the public ``News`` hub anonymously. Anonymous
streams are capped per address; the cap is set to 400 per process here, so
that without ProxyFix (every client would then have nginx's address) about
1,000 anonymous streams per process would be refused.
"""

from __future__ import annotations

import json
import os
import resource
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from flask_notifications import Event
from flask_notifications.pubsub.redis_pubsub import RedisPubSub
from flask_notifications.testing import GunicornServer, NginxServer, find_nginx

from .conftest import ROOT, worker_process

pytestmark = pytest.mark.subprocess

DEPLOY = ROOT / "examples" / "deploy"
USERS = 2000
SOURCES = [f"127.0.0.{n}" for n in range(2, 10)]  # the clients' addresses
PER_ADDRESS = 400  # NOTIFICATIONS_STREAMS_PER_ADDRESS of each process
GROUPS = 20  # a targeted message goes to the users i with i % GROUPS == its group
PREFIX = "deploy-test"


class Deployment:
    """The running stack, and an in-process app that sends like a CLI or cron job."""

    def __init__(self, nginx: NginxServer, redis_url: str) -> None:
        from examples.deploy.app import create_app

        self.nginx = nginx
        self.redis_url = redis_url
        self.app = create_app()
        self.notifications = self.app.extensions["notifications"]

    def send(self, event_type: str, seq: int, recipients: list[str] | None = None) -> None:
        with self.app.app_context():
            self.notifications.send(
                Event(None, event_type, "t", "b", recipients=recipients, seq=seq)
            )

    def news(self, seqs: range) -> None:
        for seq in seqs:
            self.send("news", seq)

    def messages(self, base: int) -> None:
        """Message ``base + g`` to the users of group ``g``, for each group."""
        for group in range(GROUPS):
            users = [f"u{i}" for i in range(group, USERS, GROUPS)]
            self.send("message", base + group, users)

    def subscribers(self, label: str) -> int:
        """How many processes hold a subscription to the hub's channel."""
        with self.app.app_context():
            hub = self.notifications.get_hub(label)
            backend = self.notifications.publisher
            assert isinstance(backend, RedisPubSub)
            channel = backend.channel_name(hub.hub_id)
        client = redis.Redis.from_url(self.redis_url)
        try:
            return int(client.pubsub_numsub(channel)[0][1])
        finally:
            client.close()


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    found = find_nginx()
    if found is None:
        if os.environ.get("FLASK_NOTIFICATIONS_REQUIRE_NGINX"):
            pytest.fail("nginx is required (run-tests.sh installs it with apt-get)")
        pytest.skip("no nginx (apt-get install nginx)")
    return found


@pytest.fixture(scope="module")
def open_files() -> Iterator[None]:
    """Raise this process's open-files limit to the hard limit, for the
    servers it starts (each stream is a descriptor in the client, two in
    nginx and one in gunicorn)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * USERS + 2000
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(f"the open-files hard limit ({hard}) is below {needed}: raise ulimit -Hn")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def deployment(redis_server, nginx_binary, open_files) -> Iterator[Deployment]:
    redis_url = f"redis://127.0.0.1:{redis_server.port}/6"
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    env = {
        "REDIS_URL": redis_url,
        "SECRET_KEY": "deploy-test-secret",
        "TRUSTED_PROXIES": "1",
        "FLASK_NOTIFICATIONS_REDIS_PREFIX": PREFIX,
        "FLASK_NOTIFICATIONS_STREAMS_PER_ADDRESS": str(PER_ADDRESS),
        "PYTHONPATH": str(ROOT),
    }
    gunicorn_args = ["-c", str(DEPLOY / "gunicorn.conf.py"), "-w", "1", "--log-level", "warning"]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)  # worker_process and the in-process app read them
        with worker_process("examples.deploy.celery_app:celery", redis_url):
            servers = [
                GunicornServer(
                    "examples.deploy.app:create_app()", gunicorn_args, cwd=ROOT, health="/health"
                )
                for _ in range(2)
            ]
            try:
                for server in servers:
                    server.start()
                template = DEPLOY / "nginx.conf"
                with NginxServer(template, [s.address for s in servers]) as nginx:
                    try:
                        yield Deployment(nginx, redis_url)
                    finally:
                        print("nginx error log:\n" + nginx.error_log)
            finally:
                for server in servers:
                    server.stop()


class LoadClient:
    """tests/deploy_load.py in a subprocess, driven one command at a time."""

    def __init__(self, port: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("deploy_load.py")), str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def ask(self, command: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"the load client did not answer {command['cmd']} in {timeout}s")
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the load client exited with {self.process.wait()}")
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write('{"cmd": "quit"}\n')
                self.process.stdin.close()
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def load(deployment: Deployment) -> Iterator[LoadClient]:
    client = LoadClient(deployment.nginx.port)
    yield client
    client.close()


def stream_specs(users: range) -> list[dict[str, Any]]:
    specs = []
    for i in users:
        source = SOURCES[i % len(SOURCES)]
        path = "/notifications/stream/"
        specs.append(
            {"key": f"inbox:{i}", "path": path + "Inbox", "source": source, "user": f"u{i}"}
        )
        specs.append({"key": f"news:{i}", "path": path + "News", "source": source, "user": None})
    return specs


def expect(
    load: LoadClient, wanted: dict[str, list[list[Any]]], timeout: float = 60
) -> dict[str, Any]:
    """Wait until every stream of ``wanted`` received as many events, then
    check that each received exactly those (in any order)."""
    got = load.ask({"cmd": "wait", "counts": {k: len(v) for k, v in wanted.items()}}, timeout)
    wrong = {
        key: {"expected": events, "got": got["events"][key]}
        for key, events in wanted.items()
        if sorted(got["events"][key], key=repr) != sorted(events, key=repr)
    }
    assert not wrong, f"{len(wrong)} streams got the wrong events, e.g. {list(wrong.items())[:3]}"
    assert got["complete"]
    return got


def test_2000_clients_through_nginx_get_every_event_and_resume(deployment, load):
    opened = load.ask({"cmd": "open", "streams": stream_specs(range(USERS))}, timeout=120)
    print(f"{2 * USERS} streams opened through nginx in {opened['seconds']:.1f}s")
    assert opened["errors"] == {}, list(opened["errors"].items())[:10]
    assert opened["opened"] == 2 * USERS
    assert opened["seconds"] < 30  # about 6 s on a 2-core machine
    # Both gunicorn processes serve streams: each holds one subscription per hub.
    assert deployment.subscribers("News") == 2
    assert deployment.subscribers("Inbox") == 2

    def wanted(users, news: range, *message_bases: int) -> dict[str, list[list[Any]]]:
        want = {}
        for i in users:
            want[f"news:{i}"] = [["news", seq] for seq in news]
            want[f"inbox:{i}"] = [["message", base + i % GROUPS] for base in message_bases]
        return want

    # Broadcasts on News reach every client; each message reaches its users only.
    deployment.news(range(0, 10))
    deployment.messages(100)
    expect(load, wanted(range(USERS), range(0, 10), 100))

    # A quarter of the clients lose their connections while events are sent...
    away = range(0, USERS, 4)
    stayed = [i for i in range(USERS) if i % 4]
    away_keys = [f"{hub}:{i}" for i in away for hub in ("inbox", "news")]
    assert load.ask({"cmd": "close", "keys": away_keys})["closed"] == len(away_keys)
    deployment.news(range(10, 15))
    deployment.messages(200)
    # (once the others got them live, they are all in the history)
    expect(load, wanted(stayed, range(0, 15), 100, 200))

    # ...and reconnect through nginx with Last-Event-ID (to either process):
    # they get exactly what they missed, then live events.
    resumed = load.ask({"cmd": "resume", "keys": away_keys}, timeout=120)
    assert resumed["errors"] == {}, list(resumed["errors"].items())[:10]
    deployment.news(range(15, 16))
    deployment.messages(300)
    want = wanted(stayed, range(0, 16), 100, 200, 300)
    want.update(wanted(away, range(10, 16), 200, 300))
    got = expect(load, want)
    assert got["errors"] == {}, list(got["errors"].items())[:10]


def test_a_forged_x_forwarded_for_does_not_escape_the_address_limit(deployment, load):
    # One address, each stream claiming another with X-Forwarded-For: ProxyFix
    # trusts only the entry nginx appends, so they all count against one address.
    count = 2 * PER_ADDRESS + 100
    specs = [
        {
            "key": f"forged:{k}",
            "path": "/notifications/stream/News",
            "source": "127.0.0.20",
            "user": None,
            "headers": {"X-Forwarded-For": f"10.0.{k // 256}.{k % 256}"},
        }
        for k in range(count)
    ]
    opened = load.ask({"cmd": "open", "streams": specs}, timeout=120)
    refused = opened["errors"].values()
    assert opened["opened"] <= 2 * PER_ADDRESS  # two processes
    assert len(refused) >= count - 2 * PER_ADDRESS
    assert all(error.startswith("429 ") for error in refused), set(refused)


def test_a_message_sent_through_nginx_reaches_its_recipient(deployment, load):
    import urllib.request

    bob = {"key": "bob", "path": "/notifications/stream/Inbox", "source": "127.0.0.30"}
    opened = load.ask({"cmd": "open", "streams": [dict(bob, user="bob")]})
    assert opened["errors"] == {}
    with urllib.request.urlopen(f"{deployment.nginx.url}/login/alice") as response:
        cookie = response.headers["Set-Cookie"].split(";", 1)[0]
    request = urllib.request.Request(
        f"{deployment.nginx.url}/message/bob", method="POST", headers={"Cookie": cookie}
    )
    with urllib.request.urlopen(request) as response:
        assert "event_id" in json.load(response)
    expect(load, {"bob": [["message", None]]})
