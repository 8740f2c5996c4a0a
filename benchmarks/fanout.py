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

``bare`` (in ``--systems``) is the reference for the physical limit:
``benchmarks/fanout_bare.py``, processes (as many as ``--workers``) that write
the same frame to the same connections in a bare loop of non-blocking sends.
For each system the
run reports the server processes' CPU time per delivery (from ``/proc``,
from the start of publishing to the last delivery), and for ``bare`` also
that of the loop alone.

``idle`` holds the streams for ``--duration`` seconds and checks the
heartbeats (``--heartbeat`` seconds apart): the largest gap between two of
them on one stream.

``--init broker`` initialises the ``ours`` app with
``init_app(app, celery=Celery(...), broker=redis.StrictRedis.from_url(...))``
instead of ``Notifications(app)`` (see benchmarks/fanout_apps.py).

``--redis cluster`` runs ``ours`` on a Redis Cluster of 3 masters
(``redis+cluster://``; sharded pub/sub, Redis 7) instead of one Redis, with
the same load; the Celery broker is then a separate Redis (kombu has no
Redis Cluster transport). Flask-SSE needs one Redis, so it runs only with
``--redis single``.

Usage: python benchmarks/fanout.py --scenario broadcast [--streams 5000] [--rate 20]
       [--duration 20] [--systems ours,bare,flask_sse] [--init url|broker]
       [--redis single|cluster] [--workers N] [--clients N] [--heartbeat S]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from fanout_load import merge_stats, read_line, start_clients  # benchmarks/fanout_load.py

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
    system: str, redis_url: str, workers: int, init: str = "url", broker_url: str = "",
    heartbeat: float | None = None,
) -> tuple[subprocess.Popen[bytes], str]:  # fmt: skip
    port = free_port()
    env = dict(
        os.environ, BENCH_APP=system, BENCH_INIT=init, REDIS_URL=redis_url,
        BROKER_URL=broker_url, PYTHONPATH=f"{ROOT}:{HERE}",
    )  # fmt: skip
    if heartbeat is not None:
        env["BENCH_HEARTBEAT"] = str(heartbeat)
    if system == "bare":
        from flask_notifications.event_hub import hub_id_for
        from flask_notifications.pubsub.redis_pubsub import RedisPubSub

        channel = RedisPubSub.default_prefix + hub_id_for("Bench")
        command = [
            sys.executable, str(HERE / "fanout_bare.py"), str(port), redis_url, channel,
            str(workers),
        ]  # fmt: skip
    else:
        command = [
            sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", str(workers),
            "--worker-connections", "30000", "--backlog", "4096", "--graceful-timeout", "2",
            "-b", f"127.0.0.1:{port}", "--log-level", "error", "fanout_apps:app",
        ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=HERE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/health", proc)
    except RuntimeError:
        stop_process(proc)
        raise SystemExit(f"{system} server did not start") from None
    return proc, base


def server_pids(master: subprocess.Popen[bytes]) -> list[str]:
    """gunicorn's workers; the process itself when it has no children (bare)."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    return children or [str(master.pid)]


def worker_rss_kb(master: subprocess.Popen[bytes]) -> int:
    total = 0
    for pid in server_pids(master):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def cpu_seconds(master: subprocess.Popen[bytes]) -> dict[str, float]:
    """User and system CPU time of each server process so far."""
    seconds = {}
    for pid in server_pids(master):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # exited meanwhile
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def cpu_since(master: subprocess.Popen[bytes], start: dict[str, float]) -> float:
    """CPU time the server processes used since ``start`` (a worker started
    meanwhile, after one died, counts from 0)."""
    return sum(t - start.get(pid, 0.0) for pid, t in cpu_seconds(master).items())


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
    if system in ("ours", "bare"):  # bare reads what RedisPubSub publishes
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
        if system in ("ours", "bare"):
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
    if system in ("ours", "bare"):
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


def fetch_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def run_system(system: str, redis_url: str, args: argparse.Namespace) -> dict[str, object]:
    mode = "targeted" if args.scenario == "targeted" else "broadcast"
    samples: list[tuple[float, int]] = []
    idle = args.scenario == "idle"
    events = 0 if idle else int(args.rate * args.duration)
    workers = args.workers
    proc, base = start_server(
        system, redis_url, workers, args.init, args.broker_url, args.heartbeat
    )
    port = int(base.rsplit(":", 1)[1])
    clients: list[tuple[subprocess.Popen[str], Path]] = []
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
        started = time.monotonic()
        clients = start_clients(
            port, stream_paths(system, mode, args.streams), args.clients, events, mode,
            args.streams, deadline_ms if events else 3_600_000, system, idle,
        )  # fmt: skip
        connected = refused = 0
        for client, _ in clients:
            _, done, failed = read_line(client, 120).split()
            connected, refused = connected + int(done), refused + int(failed)
        if system == "flask_sse":  # count Flask-SSE's subscriptions instead
            wait_until = time.monotonic() + 60
            while subscribed_streams(redis_url, mode, args.streams) < args.streams:
                if time.monotonic() > wait_until:
                    break
                time.sleep(0.2)
            connected = subscribed_streams(redis_url, mode, args.streams)
        connect_seconds = time.monotonic() - started
        time.sleep(2)
        rss_connected = worker_rss_kb(proc)
        result: dict[str, object] = {
            "system": system,
            "streams": connected,
            "refused": refused,
            "connect_s": connect_seconds,
            "rss_per_stream_kb": (rss_connected - rss_before) / max(1, connected),
            "rss_mb": rss_connected / 1024,
        }
        if idle:  # hold the streams; the clients time each one's heartbeats from now
            for command in ("mark", "stop"):
                for client, _ in clients:
                    assert client.stdin is not None
                    client.stdin.write(command + "\n")
                    client.stdin.flush()
                if command == "mark":
                    time.sleep(args.duration)
            stats = merge_stats([json.loads(read_line(c, 60)) for c, _ in clients])
            beats = stats.get("heartbeats") or {}
            result.update(
                rss_end_mb=worker_rss_kb(proc) / 1024,
                hb_streams=beats.get("streams_with_two", 0),
                hb_gap_max_s=beats.get("gap_max", float("nan")),
                hb_gap_p99_s=beats.get("gap_p99", float("nan")),
                hb_fewest=beats.get("fewest", 0),
            )
            return result
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
        while time.time() < start_at:
            time.sleep(0.01)
        cpu_start = cpu_seconds(proc)
        parts = [json.loads(read_line(c, deadline_ms / 1000 + 30)) for c, _ in clients]
        cpu = cpu_since(proc, cpu_start)
        stats = merge_stats(parts)
        publisher.join(30)
        if sampler is not None:
            sampler.join(10)
            warm_samples = [kb for t, kb in samples if t >= args.warmup]
            if warm_samples:
                result.update(
                    rss_warm_mb=warm_samples[0] / 1024,
                    rss_end_mb=warm_samples[-1] / 1024,
                    rss_max_mb=max(warm_samples) / 1024,
                    rss_growth_pct=(warm_samples[-1] - warm_samples[0]) / warm_samples[0] * 100,
                )
        received = stats["received"]
        result.update(
            events=events,
            expected=stats["expected"],
            received=received,
            lost=stats["expected"] - received,
            duplicates=stats["duplicates"],
            p50_ms=(stats["p50"] or float("nan")) * 1000,
            p99_ms=(stats["p99"] or float("nan")) * 1000,
            max_ms=(stats["max"] or float("nan")) * 1000,
            cpu_s=cpu,
            cpu_us_per_delivery=cpu / received * 1e6 if received else float("nan"),
        )
        if system == "bare" and workers == 1:  # the loop alone (several processes: see cpu)
            loop = fetch_json(base + "/stats")["loop_us_per_delivery"]
            result["loop_us_per_delivery"] = loop if loop is not None else float("nan")
        return result
    finally:
        for client, config_file in clients:
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
    parser.add_argument(
        "--systems", default="ours,bare,flask_sse", help="ours, bare (the reference), flask_sse"
    )
    parser.add_argument(
        "--clients", type=int, help="load client processes (default: 1 per 10,000 streams)"
    )
    parser.add_argument(
        "--heartbeat", type=float, help="NOTIFICATIONS_HEARTBEAT of 'ours' (default: 15)"
    )
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
    args.clients = args.clients or -(-args.streams // 10_000)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.streams + 1000)), hard)
    )
    if args.streams + 50 > hard:
        print(
            f"warning: the open-files hard limit ({hard}) caps one server process below "
            f"{args.streams} connections",
            file=sys.stderr,
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
    if args.scenario == "idle":
        columns += ["rss_end_mb", "hb_streams", "hb_gap_max_s", "hb_gap_p99_s", "hb_fewest"]
    else:
        columns += [
            "events",
            "expected",
            "received",
            "lost",
            "duplicates",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "cpu_s",
            "cpu_us_per_delivery",
            "loop_us_per_delivery",
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
    by_system = {str(r["system"]): r for r in results}
    ours, bare, theirs = (by_system.get(n) for n in ("ours", "bare", "flask_sse"))
    if args.scenario != "idle" and ours and theirs and ours["p99_ms"] and theirs["p99_ms"]:
        ratio = float(theirs["p99_ms"]) / float(ours["p99_ms"])  # type: ignore[arg-type]
        print(f"\np99 latency, flask_sse / ours: {ratio:.1f}x")
    if args.scenario != "idle" and ours and bare and "loop_us_per_delivery" in bare:
        loop, mine = bare["loop_us_per_delivery"], ours["cpu_us_per_delivery"]
        print(
            f"CPU per delivery: ours {mine:.2f} us (worker processes), bare loop {loop:.2f} us "
            f"(loop alone), {bare['cpu_us_per_delivery']:.2f} us (bare process): "
            f"ours / bare loop = {mine / loop:.2f}x"  # type: ignore[operator]
        )
    elif args.scenario != "idle" and ours and bare:
        mine, theirs_cpu = ours["cpu_us_per_delivery"], bare["cpu_us_per_delivery"]
        print(
            f"CPU per delivery: ours {mine:.2f} us, bare {theirs_cpu:.2f} us "
            f"({args.workers} processes each): ours / bare = {mine / theirs_cpu:.2f}x"  # type: ignore[operator]
        )


if __name__ == "__main__":
    main()
