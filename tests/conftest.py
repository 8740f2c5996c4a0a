"""Shared fixtures: a real redis-server, fresh Flask and Celery apps, and
real Celery workers (in-thread, or as a subprocess)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker
from flask import Flask

from flask_notifications import Notifications
from flask_notifications.testing import (
    RedisServer,
    free_port,
    no_control_socket,
    stop_process,
    wait_for_http,
)

from .smtp_server import SMTPServer

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def send_and_finish(
    app: Flask, notifications: Notifications, hub: Any, event: Any, task: str
) -> None:
    """Send ``event`` and wait until the consumer task ``task`` of ``hub``
    completed or failed for good (a dead letter)."""
    from flask_notifications import reliability

    with app.app_context():
        notifications.send(event)
        event_id = event["event_id"]
        wait_for(
            lambda: reliability.is_done(task, hub.hub_id, event_id)
            or any(json.loads(d["event"])["event_id"] == event_id
                   for d in reliability.dead_letters()),
            timeout=20,
        )  # fmt: skip


@contextlib.contextmanager
def alerts_app(app: Flask, consumer: Any, task: str) -> Iterator[tuple[Any, ...]]:
    """``app`` with the extension (identity from the ``X-User`` header) and a
    hub ``Alerts`` whose consumer is ``consumer``, registered as ``task`` and
    retried without waiting: ``(app, notifications, hub, consumer)``; the
    inbox's engine is disposed of afterwards."""
    from flask import request

    from flask_notifications._state import get_state

    notifications = Notifications(app)
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    consumer.retry_backoff = 0
    consumer.retry_jitter = False
    hub = notifications.create_hub("Alerts")
    hub.register_consumer(consumer, celery_task_name=task)
    yield app, notifications, hub, consumer
    with app.app_context():
        engine = get_state(app).engine
        if engine is not None:
            engine.dispose()


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests save what a person may want to look at (screenshots):
    ``$FLASK_NOTIFICATIONS_ARTIFACTS`` (created if missing; CI can keep it),
    else a temporary directory. Never the checkout."""
    configured = os.environ.get("FLASK_NOTIFICATIONS_ARTIFACTS")
    if not configured:
        return tmp_path_factory.mktemp("artifacts")
    path = Path(configured).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(directory=tmp_path_factory.mktemp("redis")) as server:
        yield server


def _redis7() -> None:
    """Skip (or, with ``FLASK_NOTIFICATIONS_REQUIRE_REDIS7``, fail) without a
    Redis 7 server: Cluster's sharded pub/sub needs it."""
    from flask_notifications.testing import find_redis_server, redis_version

    found = find_redis_server()
    if redis_version(found) < (7,):
        message = f"Redis 7 is needed ({found} is {redis_version(found)})"
        if os.environ.get("FLASK_NOTIFICATIONS_REQUIRE_REDIS7"):
            pytest.fail(message + "; run-tests.sh installs Debian's redis-server")
        pytest.skip(message)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A Redis Cluster of 3 masters (Redis 7), shared by the tests; each test
    that takes ``cluster_url`` starts on empty nodes."""
    from flask_notifications.testing import RedisClusterServer

    _redis7()
    with RedisClusterServer(masters=3) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: Any) -> str:
    redis_cluster.flushall()
    return str(redis_cluster.url)


@pytest.fixture
def redis_sentinel() -> Iterator[Any]:
    """A master, a replica and 3 Sentinels, for one test (it may kill the master)."""
    from flask_notifications.testing import RedisSentinelServer

    with RedisSentinelServer() as servers:
        yield servers


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def celery_app() -> Iterator[Celery]:
    """A fresh Celery app; being the newest, it is Celery's *current* app, the
    one Flask-CeleryExt configures."""
    celery = Celery(f"tests{next(_counter)}")
    yield celery
    celery.close()


@pytest.fixture
def make_app(redis_url: str, celery_app: Celery, tmp_path: Path) -> Callable[..., Flask]:
    """``make_app(**config)``: a Flask app on the test Redis. Its instance folder
    (where the inbox's default SQLite file goes) is a temporary directory, never
    the checkout's ``instance/``."""

    def factory(**config: Any) -> Flask:
        app = Flask("tests", instance_path=str(tmp_path / "instance"))
        app.config.update(
            TESTING=True,
            NOTIFICATIONS_REDIS_URL=redis_url,
            broker_connection_retry_on_startup=True,
        )
        app.config.update(config)
        return app

    return factory


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def notifications(app: Flask) -> Notifications:
    """The extension on ``app``, with Celery built by Flask-CeleryExt."""
    return Notifications(app)


@pytest.fixture
def ctx(app: Flask, notifications: Notifications) -> Iterator[None]:
    with app.app_context():
        yield


@pytest.fixture
def worker() -> Callable[[Flask], contextlib.AbstractContextManager[Any]]:
    """``with worker(app): ...`` runs a real Celery worker in a thread.

    Start it after registering consumers: a worker knows the tasks that
    exist when it starts.
    """

    @contextlib.contextmanager
    def run(app: Flask) -> Iterator[Any]:
        celery = app.extensions["notifications"].celery
        with start_worker(
            celery, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10
        ) as w:
            yield w

    return run


@pytest.fixture
def timer_sweeper() -> Callable[[Flask], contextlib.AbstractContextManager[None]]:
    """``with timer_sweeper(app): ...`` runs the workers' timer sweeper
    (:func:`~flask_notifications.delivery.sweeper.sweep_timers_forever`, what
    ``celery worker`` starts on ``worker_ready``) in a thread: the in-thread
    test worker sends no ``worker_ready``, so it does not start it."""
    from flask_notifications._state import get_state
    from flask_notifications.delivery.sweeper import sweep_timers_forever

    @contextlib.contextmanager
    def run(app: Flask) -> Iterator[None]:
        stop = threading.Event()
        thread = threading.Thread(
            target=sweep_timers_forever, args=(get_state(app).celery, stop), daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(10)

    return run


@contextlib.contextmanager
def worker_process(
    app_module: str, redis_url: str, *extra: str, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``celery -A <app_module> worker`` as a subprocess; stopped by pid."""
    env = dict(os.environ, REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app_module, "worker", "--pool=solo",
         "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat", *extra],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    lines: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace"))

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc.output = lines  # type: ignore[attr-defined]
    try:
        wait_for(lambda: any("ready." in line for line in lines) or proc.poll() is not None, 30)
        if proc.poll() is not None:
            raise AssertionError("celery worker exited:\n" + "".join(lines))
        yield proc
    finally:
        stop_process(proc, 15)
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()


def _start_app_server(
    command: list[str], port: int, redis_url: str, env: dict[str, str]
) -> tuple[str, subprocess.Popen[bytes]]:
    """Run ``command`` (serving ``tests/stream_app.py`` on ``port``) and wait
    until it answers; stopped by pid if it never does."""
    full_env = dict(os.environ, REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    full_env.update({k: str(v) for k, v in env.items()})
    proc = subprocess.Popen(command, cwd=ROOT / "tests", env=full_env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/health", proc)
    except BaseException:
        stop_process(proc)
        raise
    return base, proc


def _start_stream_server(redis_url: str, **env: str) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``tests/stream_app.py`` under gevent's WSGI server in a subprocess."""
    port = free_port()
    command = [sys.executable, str(ROOT / "examples" / "serve.py"), "stream_app:app", str(port)]
    return _start_app_server(command, port, redis_url, env)


@pytest.fixture(scope="session")
def _shared_stream_server(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    database = tmp_path_factory.mktemp("stream-app") / "inbox.sqlite"
    base, proc = _start_stream_server(redis_server.url, DATABASE_URI=f"sqlite:///{database}")
    yield base
    stop_process(proc)


@pytest.fixture
def backend_name(request: pytest.FixtureRequest) -> str:
    """``"redis"``; tests marked ``@both_backends`` also run on ``"memory"``
    (the parameter, given indirectly)."""
    return str(getattr(request, "param", "redis"))


#: Run a test on RedisPubSub (a gevent server in a subprocess) and on
#: MemoryPubSub (a threaded server in this process): the stream layer needs
#: nothing from a backend but the Backend interface.
both_backends = pytest.mark.parametrize("backend_name", ["redis", "memory"], indirect=True)


@pytest.fixture
def stream_base(request: pytest.FixtureRequest, backend_name: str, redis_url: str) -> str:
    """The base URL of a stream server with default settings: the shared gevent
    subprocess (Redis is flushed before each test), or the in-process one."""
    if backend_name == "memory":
        return str(request.getfixturevalue("memory_stream").base)
    return str(request.getfixturevalue("_shared_stream_server"))


@pytest.fixture
def publish(request: pytest.FixtureRequest, backend_name: str) -> Callable[..., str]:
    """``publish(hub_id, event)`` through the served app's backend; returns the
    history id. ``publish.key(id)`` orders ids (``Backend.id_key``)."""
    from flask_notifications.pubsub.redis_pubsub import RedisPubSub

    if backend_name == "memory":
        backend = request.getfixturevalue("memory_stream").backend
    else:
        backend = RedisPubSub(request.getfixturevalue("redis_client"))

    def _publish(hub_id: str, event: Any) -> str:
        return str(backend.publish(hub_id, event.to_json()))

    _publish.key = backend.id_key  # type: ignore[attr-defined]
    return _publish


class MemoryStreamServer:
    """``tests/stream_app.py`` on :class:`~flask_notifications.pubsub.memory_pubsub.MemoryPubSub`,
    served by werkzeug's threaded server in a thread of the test process (the
    backend's events never leave the process)."""

    def __init__(self, module: Any) -> None:
        from werkzeug.serving import make_server

        from flask_notifications.pubsub.memory_pubsub import MemoryPubSub

        self.app = module.app
        self.notifications = module.notifications
        self.backend = MemoryPubSub.from_app(self.app, None)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        with self.app.app_context():
            self.notifications.shutdown()  # ends every stream
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def memory_stream(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, celery_app: Celery
) -> Iterator[MemoryStreamServer]:
    """tests/stream_app.py with ``NOTIFICATIONS_BACKEND`` = ``MemoryPubSub``,
    served in this process (see :class:`MemoryStreamServer`)."""
    import importlib

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("BACKEND", "flask_notifications.pubsub.memory_pubsub.MemoryPubSub")
    monkeypatch.setenv("DATABASE_URI", f"sqlite:///{tmp_path / 'memory-inbox.sqlite'}")
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    sys.modules.pop("stream_app", None)
    server = MemoryStreamServer(importlib.import_module("stream_app"))
    yield server
    server.stop()
    sys.modules.pop("stream_app", None)


@pytest.fixture
def stream_server(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``stream_server(HEARTBEAT="0.3", ...)`` starts a stream server of its own
    (settings from the environment) and returns its base URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> str:
        env.setdefault("DATABASE_URI", f"sqlite:///{tmp_path / f'inbox{len(procs)}.sqlite'}")
        base, proc = _start_stream_server(env.pop("REDIS_URL", redis_url), **env)
        procs.append(proc)
        return base

    yield start
    for proc in procs:
        stop_process(proc)


def _start_gunicorn(redis_url: str, *args: str, **env: str) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``tests/stream_app.py`` under ``gunicorn -k gevent`` (one worker
    unless ``args`` say otherwise) in a subprocess."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", *no_control_socket(),
        "-b", f"127.0.0.1:{port}", "--log-level", "warning", *args, "stream_app:app",
    ]  # fmt: skip
    return _start_app_server(command, port, redis_url, env)


@pytest.fixture
def stream_process(
    redis_url: str, tmp_path: Path
) -> Iterator[Callable[..., tuple[str, subprocess.Popen[bytes]]]]:
    """``stream_process("gunicorn" | "serve", *gunicorn_args, **env)`` serves
    ``tests/stream_app.py`` in a subprocess of its own, with ``gunicorn -k
    gevent`` or ``examples/serve.py``, and returns its base URL and process
    (for tests that signal it). Stopped by pid at the end, if still running."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(server: str, *args: str, **env: str) -> tuple[str, subprocess.Popen[bytes]]:
        env.setdefault("DATABASE_URI", f"sqlite:///{tmp_path / f'inbox{len(procs)}.sqlite'}")
        if server == "gunicorn":
            base, proc = _start_gunicorn(redis_url, *args, **env)
        else:
            assert server == "serve" and not args
            base, proc = _start_stream_server(redis_url, **env)
        procs.append(proc)
        return base, proc

    yield start
    for proc in procs:
        stop_process(proc)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster (Debian's ``postgresql``) on a free port;
    yields an SQLAlchemy URL of an empty database."""
    from flask_notifications.testing import PostgresServer, find_postgres_bin

    if find_postgres_bin() is None:
        if os.environ.get("FLASK_NOTIFICATIONS_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is required (run-tests.sh installs Debian's postgresql)")
        pytest.skip("no PostgreSQL server binaries")
    with PostgresServer(database="notifications_test") as server:
        yield server.url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty inbox database: an SQLite file, and PostgreSQL where installed."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'inbox.sqlite'}"
        return
    url = request.getfixturevalue("postgres_server")
    import sqlalchemy

    from flask_notifications.inbox.models import metadata

    engine = sqlalchemy.create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()
    yield url


# -- the microblog example (examples/microblog) as a real stack ---------------------------

MICROBLOG = ROOT / "examples" / "microblog"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (a Playwright ``Browser``);
    skipped without it, unless ``FLASK_NOTIFICATIONS_REQUIRE_BROWSER`` is set."""
    import shutil

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


class MicroblogStack:
    """The microblog demo's processes: the gevent web server (a subprocess on
    a free port) and a Celery worker subprocess, on a real Redis and SQLite
    file, mailing to an :class:`~tests.smtp_server.SMTPServer`."""

    def __init__(self, redis_url: str, database: Path, mail: SMTPServer) -> None:
        self.redis_url = redis_url
        self.database = database
        self.mail = mail
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            "REDIS_URL": redis_url,
            "MICROBLOG_DATABASE": str(database),
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(mail.port),
            # E-mail what stays unread 1 s (2 minutes in the demo).
            "MICROBLOG_EMAIL_UNREAD_AFTER": "1",
            "MICROBLOG_REMIND_AFTER": "1",
        }
        self.web: subprocess.Popen[bytes] | None = None
        #: The Celery worker subprocess, once started.
        self.worker: subprocess.Popen[bytes] | None = None

    def start_web(self) -> None:
        """Start the web server (again, on the same port) and wait for it."""
        self.web = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "serve.py"), "app:app", str(self.port)],
            cwd=MICROBLOG, env=dict(os.environ, PYTHONPATH=str(ROOT), **self.env),
        )  # fmt: skip
        try:
            wait_for_http(self.base + "/login", self.web)
        except BaseException:
            self.stop_web()
            raise

    def stop_web(self) -> None:
        """Stop the web server: every open stream is cut."""
        if self.web is not None:
            stop_process(self.web)
            self.web = None


@pytest.fixture
def microblog_stack(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MicroblogStack]:
    """examples/microblog served for real: web server, Celery worker, SMTP sink."""
    mail = SMTPServer().start()
    stack = MicroblogStack(redis_url, tmp_path / "microblog.sqlite", mail)
    try:
        stack.start_web()  # first: importing the app creates the tables and accounts
        for key, value in stack.env.items():
            monkeypatch.setenv(key, value)  # worker_process passes os.environ on
        with worker_process("app:celery", redis_url, cwd=MICROBLOG) as worker:
            stack.worker = worker
            yield stack
    finally:
        stack.stop_web()
        mail.stop()


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory of real SMTP servers (aiosmtpd): ``smtp_server(tls=None|"starttls"|"ssl")``."""
    started: list[SMTPServer] = []

    def start(tls: str | None = None) -> SMTPServer:
        server = SMTPServer(tls, tmp_path).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
