"""Child processes for tests: stop them by pid, wait for their ports, pick
free ports (used by :mod:`flask_notifications.testing`)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import Any, Self


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


def wait_for_port(
    port: int,
    process: subprocess.Popen[Any] | None = None,
    timeout: float = 30.0,
    host: str = "127.0.0.1",
) -> None:
    """Wait until a TCP server accepts connections on ``host:port``.

    :param port: the port.
    :param process: the server's process: stop waiting if it exits.
    :param timeout: seconds to wait.
    :param host: the address.
    :raises RuntimeError: if the process exits or nothing accepts in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {process.returncode} before {host}:{port} accepted"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing accepted on {host}:{port} within {timeout:g}s")
        time.sleep(0.05)


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
