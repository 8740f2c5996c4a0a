"""Fan-out: Flask-Notifications next to Flask-SSE, same gunicorn -k gevent, same Redis.

Starts its own redis-server on 127.0.0.1, then for each system a gunicorn
server (``-k gevent``, ``--workers`` of them: 2 by default, 1 for ``idle`` so
that its figures are per process) running
``benchmarks/fanout_apps.py``. One load client (``sse_load.js``, Node.js,
so that it leaves the CPU to the servers) opens the streams and parses them;
a separate publisher process publishes at a fixed rate:

- Flask-Notifications: ``RedisPubSub.publish``, the path of a worker's
  PushConsumer (history entry + live message in one script);
- Flask-SSE: what ``sse.publish`` sends (``{"data": ..., "type": ...}`` on a channel).

Each event carries its sequence number and the time it was published, so the
client measures delivery latency (receive time - publish time) and counts
lost and duplicated deliveries per stream. Server RSS is read from /proc.

Scenarios (``--scenario``):

- ``broadcast``: N streams, every event to every stream (default 5,000 streams, 20 events/s);
- ``targeted``: N users with a stream each, every event to one user
  (Flask-SSE: a channel per user) (default 5,000 users, 1,000 events/s);
- ``idle``: N streams and no events: RSS per stream (default 10,000);
- ``soak``: broadcast for a long time (default 2,000 streams, 50 events/s;
  give ``--duration 300``): lost, duplicates, and the growth of the server's
  RSS from the end of ``--warmup`` to the end.

``--init broker`` initialises the ``ours`` app with
``init_app(app, celery=Celery(...), broker=redis.StrictRedis.from_url(...))``
instead of ``Notifications(app)`` (see benchmarks/fanout_apps.py).

``--redis cluster`` runs ``ours`` on a Redis Cluster of 3 masters
(``redis+cluster://``; sharded pub/sub, Redis 7) instead of one Redis, with
the same load; the Celery broker is then a separate Redis (kombu has no
Redis Cluster transport). Flask-SSE needs one Redis, so it runs only with
``--redis single``.

Usage: python benchmarks/fanout.py --scenario broadcast [--streams 5000] [--rate 20]
       [--duration 20] [--systems ours,flask_sse] [--init url|broker] [--redis single|cluster]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from flask_notifications.testing import (
    RedisClusterServer,
    RedisServer,
    free_port,
    stop_process,
    wait_for_http,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# -- servers ----------------------------------------------------------------------


def start_server(
    system: str, redis_url: str, workers: int, init: str = "url", broker_url: str = ""
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(
        os.environ, BENCH_APP=system, BENCH_INIT=init, REDIS_URL=redis_url,
        BROKER_URL=broker_url, PYTHONPATH=f"{ROOT}:{HERE}",
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", str(workers),
         "--worker-connections", "30000", "--backlog", "4096", "--graceful-timeout", "2",
         "-b", f"127.0.0.1:{port}", "--log-level", "error", "fanout_apps:app"],
        cwd=HERE, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/health", proc)
    except RuntimeError:
        stop_process(proc)
        raise SystemExit(f"{system} server did not start") from None
    return proc, base


def worker_rss_kb(master: subprocess.Popen[bytes]) -> int:
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    total = 0
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


# -- the publisher (its own process) ------------------------------------------------


def publish_loop(
    system: str, redis_url: str, mode: str, streams: int, rate: float, count: int, start: float
) -> None:
    import redis

    from flask_notifications._redis import blocking_client

    if redis_url.startswith("redis+cluster://"):
        config = {"NOTIFICATIONS_REDIS_MAX_CONNECTIONS": 4, "NOTIFICATIONS_REDIS_POOL_TIMEOUT": 5}
        client = blocking_client(redis_url, config)
    else:
        client = redis.Redis.from_url(redis_url)
    if system == "ours":
        from flask_notifications import Event
        from flask_notifications.event_hub import hub_id_for
        from flask_notifications.pubsub.redis_pubsub import RedisPubSub

        backend, hub_id = RedisPubSub(client), hub_id_for("Bench")
    while time.time() < start:
        time.sleep(0.001)
    for seq in range(count):
        due = start + seq / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        target = f"u{seq % streams}"
        if system == "ours":
            recipients = [target] if mode == "targeted" else []
            event = Event(None, "bench", "t", "b", recipients=recipients, seq=seq, sent=time.time())
            backend.publish(hub_id, event.to_json())
        else:
            channel = target if mode == "targeted" else "sse"
            message = json.dumps({"data": {"seq": seq, "sent": time.time()}, "type": "bench"})
            client.publish(channel, message)
    client.close()


# -- the load client (Node.js: cheap enough to leave the CPU to the servers) ---------


def stream_paths(system: str, mode: str, streams: int) -> list[str]:
    if system == "ours":
        return [f"/notifications/stream/Bench?user=u{i}" for i in range(streams)]
    return [f"/stream?channel={f'u{i}' if mode == 'targeted' else 'sse'}" for i in range(streams)]


def subscribed_streams(redis_url: str, mode: str, streams: int) -> int:
    """Flask-SSE sends no headers before its first event: count its Redis subscriptions."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        if mode == "broadcast":
            return int(client.pubsub_numsub("sse")[0][1])
        names = [f"u{i}" for i in range(streams)]
        chunks = [names[i : i + 1000] for i in range(0, len(names), 1000)]
        return sum(int(n) for chunk in chunks for _, n in client.pubsub_numsub(*chunk))
    finally:
        client.close()


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise SystemExit("the load client did not answer in time")
    return proc.stdout.readline().strip()


def run_system(system: str, redis_url: str, args: argparse.Namespace) -> dict[str, object]:
    mode = "targeted" if args.scenario == "targeted" else "broadcast"
    samples: list[tuple[float, int]] = []
    events = 0 if args.scenario == "idle" else int(args.rate * args.duration)
    proc, base = start_server(system, redis_url, args.workers, args.init, args.broker_url)
    port = int(base.rsplit(":", 1)[1])
    client = None
    try:
        warm = "/notifications/stream/Bench?user=warm" if system == "ours" else "/health"
        try:
            with urllib.request.urlopen(base + warm, timeout=2) as response:
                response.read(1)  # the dispatcher starts, imports are done
        except OSError:
            pass
        time.sleep(0.5)
        rss_before = worker_rss_kb(proc)
        deadline_ms = int((3 + args.duration + args.drain) * 1000)
        config = {
            "port": port,
            "paths": stream_paths(system, mode, args.streams),
            "events": events,
            "mode": mode,
            "deadline_ms": deadline_ms if events else 3_600_000,
            "no_head": system != "ours",
        }
        started = time.monotonic()
        config_file = Path(tempfile.mkstemp(prefix="sse-load-", suffix=".json")[1])
        config_file.write_text(json.dumps(config))
        client = subprocess.Popen(
            ["node", str(HERE / "sse_load.js"), str(config_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        _, connected, refused = read_line(client, 120).split()
        if system != "ours":  # count Flask-SSE's subscriptions instead
            wait_until = time.monotonic() + 60
            while subscribed_streams(redis_url, mode, args.streams) < args.streams:
                if time.monotonic() > wait_until:
                    break
                time.sleep(0.2)
            connected = str(subscribed_streams(redis_url, mode, args.streams))
        connect_seconds = time.monotonic() - started
        time.sleep(2)
        rss_connected = worker_rss_kb(proc)
        result: dict[str, object] = {
            "system": system,
            "streams": int(connected),
            "refused": int(refused),
            "connect_s": connect_seconds,
            "rss_per_stream_kb": (rss_connected - rss_before) / max(1, int(connected)),
            "rss_mb": rss_connected / 1024,
        }
        if events:
            start_at = time.time() + 1.0
            publisher = multiprocessing.get_context("spawn").Process(
                target=publish_loop,
                args=(system, redis_url, mode, args.streams, args.rate, events, start_at),
            )
            publisher.start()
            sampler = None
            if args.scenario == "soak":  # server RSS every 5 s while publishing
                import threading

                def sample() -> None:
                    end = start_at + args.duration
                    while time.time() < end:
                        samples.append((time.time() - start_at, worker_rss_kb(proc)))
                        time.sleep(5)

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
            stats = json.loads(read_line(client, deadline_ms / 1000 + 30))
            publisher.join(30)
            if sampler is not None:
                sampler.join(10)
                warm = [kb for t, kb in samples if t >= args.warmup]
                if warm:
                    result.update(
                        rss_warm_mb=warm[0] / 1024,
                        rss_end_mb=warm[-1] / 1024,
                        rss_max_mb=max(warm) / 1024,
                        rss_growth_pct=(warm[-1] - warm[0]) / warm[0] * 100,
                    )
            result.update(
                events=events,
                expected=stats["expected"],
                received=stats["received"],
                lost=stats["expected"] - stats["received"],
                duplicates=stats["duplicates"],
                p50_ms=(stats["p50"] or float("nan")) * 1000,
                p99_ms=(stats["p99"] or float("nan")) * 1000,
                max_ms=(stats["max"] or float("nan")) * 1000,
            )
        return result
    finally:
        if client is not None:
            if client.poll() is None:
                client.terminate()
                client.wait(10)
            config_file.unlink(missing_ok=True)
        stop_process(proc, 15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario", choices=["broadcast", "targeted", "idle", "soak"], default="broadcast"
    )
    parser.add_argument("--warmup", type=float, default=30, help="soak: seconds before RSS counts")
    parser.add_argument("--streams", type=int)
    parser.add_argument("--rate", type=float, help="events per second")
    parser.add_argument("--duration", type=float, default=20, help="seconds of publishing")
    parser.add_argument(
        "--drain", type=float, default=30, help="seconds to wait for late deliveries"
    )
    parser.add_argument("--systems", default="ours,flask_sse")
    parser.add_argument(
        "--init",
        choices=["url", "broker"],
        default="url",
        help="how the 'ours' app initialises: Notifications(app) with NOTIFICATIONS_REDIS_URL "
        "(url), or init_app(app, celery=Celery(...), broker=redis.StrictRedis.from_url(...)) "
        "with every default (broker)",
    )
    parser.add_argument(
        "--workers", type=int, help="gunicorn workers, the same for both (default 2; idle: 1)"
    )
    parser.add_argument(
        "--redis",
        choices=["single", "cluster"],
        default="single",
        help="one redis-server (single), or a Redis Cluster of 3 masters for 'ours' (cluster)",
    )
    args = parser.parse_args()
    if args.redis == "cluster" and (args.init != "url" or "flask_sse" in args.systems):
        parser.error("--redis cluster runs 'ours' with --init url only: --systems ours")
    defaults = {
        "broadcast": (5000, 20),
        "targeted": (5000, 1000),
        "idle": (10000, 0),
        "soak": (2000, 50),
    }[args.scenario]
    args.streams = args.streams or defaults[0]
    args.rate = args.rate if args.rate is not None else defaults[1]
    args.workers = args.workers or (1 if args.scenario == "idle" else 2)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.streams + 1000)), hard)
    )

    results = []
    maxclients = ["--maxclients", str(2 * args.streams + 1000)]
    with RedisServer(extra_args=maxclients) as server:
        args.broker_url = ""
        if args.redis == "cluster":
            # The cluster carries pub/sub and history; the single Redis the broker.
            args.broker_url = server.url
            with RedisClusterServer(masters=3, extra_args=maxclients) as cluster:
                results.append(run_system("ours", cluster.url, args))
        else:
            for system in args.systems.split(","):
                results.append(run_system(system, server.url, args))

    import flask_notifications

    print(
        f"scenario {args.scenario}: {args.streams} streams, {args.rate:g} events/s for "
        f"{args.duration:g} s; gunicorn -k gevent -w {args.workers}; init {args.init}; "
        f"redis {args.redis}; "
        f"python {sys.version.split()[0]}; flask-notifications {flask_notifications.__version__}"
    )
    columns = ["system", "streams", "refused", "connect_s", "rss_per_stream_kb", "rss_mb"]
    if args.scenario != "idle":
        columns += [
            "events",
            "expected",
            "received",
            "lost",
            "duplicates",
            "p50_ms",
            "p99_ms",
            "max_ms",
        ]
    if args.scenario == "soak":
        columns += ["rss_warm_mb", "rss_end_mb", "rss_max_mb", "rss_growth_pct"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for result in results:
        cells = []
        for column in columns:
            value = result.get(column, "")
            cells.append(
                f"{value:,.1f}"
                if isinstance(value, float)
                else f"{value:,}"
                if isinstance(value, int)
                else str(value)
            )
        print("| " + " | ".join(cells) + " |")
    if args.scenario != "idle" and len(results) == 2:
        ours, theirs = results
        if ours["p99_ms"] and theirs["p99_ms"]:
            ratio = theirs["p99_ms"] / ours["p99_ms"]
            print(f"\np99 latency, flask_sse / ours: {ratio:.1f}x")


if __name__ == "__main__":
    main()
