"""Start the demo: an embedded Redis (unless ``REDIS_URL`` is set), one Celery
worker and the gevent web server on ``PORT`` (default 5000). Ctrl-C stops
every child process this script started.

Used by ``./run-demo.sh``; the demo is ``examples/simple`` for now.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flask_notifications.testing import RedisServer, stop_process, wait_for_http

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE / "simple"


def main() -> int:
    port = int(os.environ.get("PORT", "5000"))
    redis_server: RedisServer | None = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        redis_server = RedisServer().start()
        redis_url = redis_server.url
    env = dict(os.environ, REDIS_URL=redis_url)
    children: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
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
        web = subprocess.Popen(
            [sys.executable, str(HERE / "serve.py"), "app:app", str(port)], cwd=EXAMPLE, env=env
        )
        children.append(web)
        url = f"http://127.0.0.1:{port}/"
        wait_for_http(url, web)
        print(f"\nFlask-Notifications demo: {url}")
        print(f"Redis: {redis_url}{' (embedded)' if redis_server else ''}")
        print("No accounts needed: the simple example has none. Ctrl-C stops everything.\n")
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for child in children:
            stop_process(child)
        if redis_server is not None:
            redis_server.stop()


if __name__ == "__main__":
    sys.exit(main())
