"""Start the demo, ``examples/microblog``: an embedded Redis (unless
``REDIS_URL`` is set), a debugging SMTP server that prints the mails it
receives, one Celery worker and the gevent web server on ``PORT`` (default
5000). Ctrl-C stops every child process this script started.

Used by ``./run-demo.sh``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from flask_notifications.testing import RedisServer, free_port, stop_process, wait_for_http

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE / "microblog"
ACCOUNTS = ("alice", "bob", "carol")


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Wait until something accepts TCP connections on ``127.0.0.1:port``.

    :param port: the port.
    :param process: the server's process: stop waiting if it exits.
    :param timeout: seconds to wait.
    :raises RuntimeError: if the process exits or the port stays closed.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on port {port} after {timeout:g}s")
        time.sleep(0.1)


def main() -> int:
    """Run the demo until Ctrl-C (or SIGTERM); return the exit status."""
    port = int(os.environ.get("PORT", "5000"))
    redis_server: RedisServer | None = None
    redis_url = os.environ.get("REDIS_URL")
    children: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        if not redis_url:
            redis_server = RedisServer().start()
            redis_url = redis_server.url
        mail_port = free_port()
        env = dict(
            os.environ,
            REDIS_URL=redis_url,
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=str(mail_port),
            PYTHONUNBUFFERED="1",  # the SMTP server prints each mail at once
        )
        # A debugging SMTP server: prints every mail it receives, delivers none.
        smtp = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{mail_port}"], env=env
        )
        children.append(smtp)
        wait_for_port(mail_port, smtp)
        # The web server first: importing the app creates the tables and the accounts.
        web = subprocess.Popen(
            [sys.executable, str(HERE / "serve.py"), "app:app", str(port)], cwd=EXAMPLE, env=env
        )
        children.append(web)
        url = f"http://127.0.0.1:{port}/"
        wait_for_http(url + "login", web)
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "--quiet",  # no banner: the URL below stays in sight
                    "-A",
                    "app:celery",
                    "worker",
                    "--pool=solo",
                    "--loglevel=WARNING",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=EXAMPLE,
                env=env,
            )  # fmt: skip
        )
        print(f"\nFlask-Notifications demo, the microblog: {url}")
        print(f"Accounts: {', '.join(ACCOUNTS)}; password: demo")
        print("Log in as two of them in two browsers (or one private window) and send messages.")
        print(f"Redis: {redis_url}{' (embedded)' if redis_server else ''}")
        print(f"Mails are printed here by the debugging SMTP server (127.0.0.1:{mail_port}).")
        print("Ctrl-C stops everything.\n", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for child in reversed(children):
            stop_process(child)
        if redis_server is not None:
            redis_server.stop()


if __name__ == "__main__":
    sys.exit(main())
