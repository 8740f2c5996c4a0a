"""PushConsumer publish throughput: one Redis next to a Redis Cluster of 3 shards.

What a Celery worker's :class:`~flask_notifications.consumers.PushConsumer`
costs per event: ``consume(event)`` runs the history-and-publish script
(``XADD`` + ``PUBLISH``, or ``SPUBLISH`` on a cluster) through the
application's backend. Publisher processes (``--processes``, each with
``--threads`` threads, like a worker pool) publish broadcast events to
``--hubs`` hubs (spread evenly over the shards of the cluster) for
``--duration`` seconds; each Redis server's CPU time is read from ``INFO
cpu`` before and after.

Both setups run in the same invocation, on the same machine and load: the
figures that matter for scaling out are the events per second each shard
served and the CPU each shard spent per event (how far one shard is from
saturation), not the total, which on a small machine is bounded by the
publishers' own CPU.

``--subscribers N`` adds N subscribers to every hub (``redis-cli``
processes, on a cluster one per hash slot, as N web processes' dispatchers
subscribe), so that each event is delivered N times: with ``--rate`` (events
per second in all, instead of as fast as possible) it measures what each
delivery costs a shard. Keep ``--hubs`` small then (one process per hub and
subscriber on a cluster).

Usage: python benchmarks/publish.py [--redis single,cluster] [--processes 2]
       [--threads 4] [--hubs 30] [--duration 10] [--rate 0] [--subscribers 0]
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import threading
import time
from typing import Any

from flask_notifications.testing import (
    RedisClusterServer,
    RedisServer,
    find_redis_cli,
    stop_process,
)


def publisher(
    url: str, labels: list[str], threads: int, seconds: float, start: float, rate: float, out: Any
) -> None:
    """One publisher process: ``threads`` threads calling PushConsumer.consume."""
    from flask import Flask

    from flask_notifications import Event, Notifications
    from flask_notifications.consumers import PushConsumer

    app = Flask("publish_bench")
    app.config.update(
        NOTIFICATIONS_REDIS_URL=url,
        CELERY_BROKER_URL="memory://",  # no broker work here
        NOTIFICATIONS_REDIS_MAX_CONNECTIONS=threads + 2,
    )
    notifications = Notifications(app)
    consumers = [
        PushConsumer(notifications.redis, notifications.create_hub(label).hub_id)
        for label in labels
    ]
    hubs = len(consumers)
    event = Event(None, "bench", "title", "body " * 20)
    counts = [0] * threads

    def run(index: int) -> None:
        with app.app_context():
            consumers[0].consume(event)  # the backend and its script, built before timing
            while time.time() < start:
                time.sleep(0.001)
            end = start + seconds
            done = 0
            while time.time() < end:
                if rate:  # this thread's share of the rate
                    delay = start + done / rate - time.time()
                    if delay > 0:
                        time.sleep(delay)
                consumers[(index + done) % hubs].consume(event)
                done += 1
            counts[index] = done

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put(sum(counts))


def cpu_seconds(server: RedisServer) -> float:
    with server.client() as client:
        info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def events_per_node(server: RedisServer) -> int:
    """Entries in the hubs' histories on one server (each publish adds one)."""
    total = 0
    with server.client() as client:
        for key in client.scan_iter(match="*:history", count=1000):
            info = client.xinfo_stream(key)  # entries-added: Redis 7; the length is capped
            total += int(info.get("entries-added", info["length"]))
    return total


def channel(label: str, cluster: bool) -> str:
    from flask_notifications.event_hub import hub_id_for

    hub_id = hub_id_for(label)
    return f"flask_notifications:{{{hub_id}}}" if cluster else f"flask_notifications:{hub_id}"


def hub_labels(count: int, servers: list[RedisServer], cluster: bool) -> list[str]:
    """``count`` hub labels, spread evenly over the shards of a cluster."""
    if not cluster:
        return [f"Bench{i}" for i in range(count)]
    share = -(-count // len(servers))
    placed: dict[int, list[str]] = {server.port: [] for server in servers}
    number = 0
    with servers[0].client() as client:
        while sum(len(labels) for labels in placed.values()) < count:
            label = f"Bench{number}"
            number += 1
            port = _owner(client, channel(label, cluster))[1]
            if len(placed[port]) < share:
                placed[port].append(label)
    return [label for labels in placed.values() for label in labels][:count]


def subscribe(
    servers: list[RedisServer], labels: list[str], cluster: bool, count: int
) -> list[Any]:
    """``count`` redis-cli subscribers per hub, on its shard."""
    if not count:
        return []
    names = [channel(label, cluster) for label in labels]
    cli = find_redis_cli(servers[0].executable)
    assert cli is not None, "--subscribers needs redis-cli"
    procs = []
    for server in servers:
        groups = [names]
        if cluster:  # the channels whose slot this node owns, one SSUBSCRIBE per slot
            with server.client() as client:
                slots: dict[int, list[str]] = {}
                for name in names:
                    slot, port = _owner(client, name)
                    if port == server.port:
                        slots.setdefault(slot, []).append(name)
            groups = list(slots.values())
        command = "SSUBSCRIBE" if cluster else "SUBSCRIBE"
        for group in groups:
            for _ in range(count):
                procs.append(
                    subprocess.Popen(
                        [cli, "-p", str(server.port), command, *group],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                )
    time.sleep(1.0)
    return procs


def _owner(client: Any, channel: str) -> tuple[int, int]:
    """The hash slot of ``channel``, and the port of the node that owns it."""
    slot = int(client.execute_command("CLUSTER KEYSLOT", channel))
    for first, last, primary, *_ in client.execute_command("CLUSTER SLOTS"):
        if first <= slot <= last:
            return slot, int(primary[1])
    raise LookupError(channel)


def measure(kind: str, url: str, servers: list[RedisServer], args: argparse.Namespace) -> dict:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    labels = hub_labels(args.hubs, servers, kind == "cluster")
    subscribers = subscribe(servers, labels, kind == "cluster", args.subscribers)
    start = time.time() + 5.0  # every process has imported and connected by then
    rate = args.rate / (args.processes * args.threads)
    processes = [
        context.Process(
            target=publisher,
            args=(url, labels, args.threads, args.duration, start, rate, out),
        )
        for _ in range(args.processes)
    ]
    for process in processes:
        process.start()
    while time.time() < start - 0.2:
        time.sleep(0.05)
    before = [cpu_seconds(s) for s in servers]
    total = sum(out.get(timeout=args.duration + 60) for _ in processes)
    after = [cpu_seconds(s) for s in servers]
    for process in processes:
        process.join(10)
    for proc in subscribers:
        stop_process(proc)
    per_node = [events_per_node(s) for s in servers]
    cpu = [(b - a) / args.duration * 100 for a, b in zip(before, after, strict=True)]
    return {
        "redis": kind,
        "shards": len(servers),
        "events_s": total / args.duration,
        "per_shard_events_s": "/".join(f"{n / args.duration:,.0f}" for n in per_node),
        "shard_cpu_pct": "/".join(f"{c:.0f}" for c in cpu),
        "subscribers": args.subscribers,
        "cpu_us_per_event": sum(b - a for a, b in zip(before, after, strict=True))
        / max(1, total)
        * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="single,cluster")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--hubs", type=int, default=30)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rate", type=float, default=0, help="events/s in all (0: at full speed)")
    parser.add_argument("--subscribers", type=int, default=0, help="subscribers per shard")
    args = parser.parse_args()
    results = []
    for kind in args.redis.split(","):
        if kind == "single":
            with RedisServer() as server:
                results.append(measure(kind, server.url, [server], args))
        else:
            with RedisClusterServer(masters=3) as cluster:
                results.append(measure(kind, cluster.url, cluster.nodes, args))

    import redis

    import flask_notifications

    print(
        f"PushConsumer.consume, broadcast events of 160 bytes of body to {args.hubs} hubs; "
        f"{args.processes} processes x {args.threads} threads for {args.duration:g} s"
        f"{f' at {args.rate:g} events/s' if args.rate else ''}; "
        f"python {sys.version.split()[0]}, redis-py {redis.__version__}, "
        f"flask-notifications {flask_notifications.__version__}"
    )
    columns = list(results[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for result in results:
        cells = [f"{v:,.1f}" if isinstance(v, float) else str(v) for v in result.values()]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
