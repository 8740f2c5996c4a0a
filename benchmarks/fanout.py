"""Fan-out: Flask-Notifications next to Flask-SSE, same gunicorn -k gevent, same Redis.

Starts its own redis-server on 127.0.0.1, then for each system a gunicorn
server (``-k gevent -w 1``, so the figures are per process) running
``benchmarks/fanout_apps.py``. One asyncio client process opens the streams
and parses them; a separate publisher process publishes at a fixed rate:

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
- ``idle``: N streams and no events: RSS per stream (default 10,000).

Usage: python benchmarks/fanout.py --scenario broadcast [--streams 5000] [--rate 20]
       [--duration 20] [--systems ours,flask_sse]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import resource
import subprocess
import sys
import time
import urllib.request
from array import array
from pathlib import Path

from flask_notifications.testing import RedisServer, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Flask-Notifications keeps field order (seq, sent); Flask's JSON sorts keys (sent, seq).
EVENT_RX = re.compile(rb'"seq": ?(\d+), ?"sent": ?([0-9.]+)|"sent": ?([0-9.]+), ?"seq": ?(\d+)')


# -- servers ----------------------------------------------------------------------


def start_server(system: str, redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ, BENCH_APP=system, REDIS_URL=redis_url, PYTHONPATH=f"{ROOT}:{HERE}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1",
         "--worker-connections", "30000", "--backlog", "4096", "--graceful-timeout", "2",
         "-b", f"127.0.0.1:{port}", "--log-level", "error", "fanout_apps:app"],
        cwd=HERE, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop(proc)
                raise SystemExit(f"{system} server did not start") from None
            time.sleep(0.2)
    return proc, base


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


# -- the client ---------------------------------------------------------------------


class Stats:
    def __init__(self, streams: int, events: int, mode: str) -> None:
        self.mode = mode
        self.streams = streams
        self.events = events
        self.connected = 0
        self.refused = 0
        self.closed_early = 0
        self.received = 0
        self.duplicates = 0
        self.latencies = array("d")
        self.seen = [bytearray(events) for _ in range(streams)] if events else []


class SSEProtocol(asyncio.Protocol):
    def __init__(self, index: int, stats: Stats, request: bytes) -> None:
        self.index, self.stats, self.request = index, stats, request
        self.buffer = b""
        self.head_done = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer + data
        if not self.head_done:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            status = buffer[9:12]
            self.head_done = True
            if status == b"200":
                self.stats.connected += 1  # (Flask-SSE's are recounted from Redis)
            else:
                self.stats.refused += 1
            buffer = buffer[end + 4 :]
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            self.buffer = buffer
            return
        part, self.buffer = buffer[:cut], buffer[cut + 2 :]
        stats = self.stats
        seen = stats.seen[self.index] if stats.seen else None
        for match in EVENT_RX.finditer(part):
            if match[1] is not None:
                seq, sent = int(match[1]), float(match[2])
            else:
                seq, sent = int(match[4]), float(match[3])
            stats.latencies.append(now - sent)
            if seen is not None and seq < len(seen):
                if seen[seq]:
                    stats.duplicates += 1
                else:
                    seen[seq] = 1
                    stats.received += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed_early += 1


def subscribed_streams(redis_url: str, stats: Stats) -> int:
    """Flask-SSE sends no headers before its first event: count its Redis subscriptions."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        if stats.mode == "broadcast":
            return int(client.pubsub_numsub("sse")[0][1])
        names = [f"u{i}" for i in range(stats.streams)]
        chunks = [names[i : i + 1000] for i in range(0, len(names), 1000)]
        return sum(int(n) for chunk in chunks for _, n in client.pubsub_numsub(*chunk))
    finally:
        client.close()


async def open_streams(
    system: str, port: int, stats: Stats, redis_url: str, batch: int = 250
) -> list[asyncio.Transport]:
    loop = asyncio.get_running_loop()
    transports = []
    for start in range(0, stats.streams, batch):
        coros = []
        for i in range(start, min(start + batch, stats.streams)):
            if system == "ours":
                path = f"/notifications/stream/Bench?user=u{i}"
            else:
                channel = f"u{i}" if stats.mode == "targeted" else "sse"
                path = f"/stream?channel={channel}"
            request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       "Accept: text/event-stream\r\n\r\n").encode()  # fmt: skip
            coros.append(
                loop.create_connection(
                    lambda i=i, r=request: SSEProtocol(i, stats, r), "127.0.0.1", port
                )
            )
        for transport, _ in await asyncio.gather(*coros):
            transports.append(transport)
        await asyncio.sleep(0.05)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if system == "ours" and stats.connected + stats.refused >= stats.streams:
            break
        if system != "ours" and subscribed_streams(redis_url, stats) >= stats.streams:
            break
        await asyncio.sleep(0.2)
    if system != "ours":
        stats.connected = subscribed_streams(redis_url, stats)
    return transports


def expected_deliveries(stats: Stats) -> int:
    return stats.events * (stats.streams if stats.mode == "broadcast" else 1)


async def run_system(system: str, redis_url: str, args: argparse.Namespace) -> dict[str, object]:
    mode = args.scenario
    events = 0 if mode == "idle" else int(args.rate * args.duration)
    stats = Stats(args.streams, events, "targeted" if mode == "targeted" else "broadcast")
    proc, base = start_server(system, redis_url)
    port = int(base.rsplit(":", 1)[1])
    try:
        with urllib.request.urlopen(
            base + ("/notifications/stream/Bench?user=warm" if system == "ours" else "/health"),
            timeout=2,
        ) as r:
            r.read(1)  # warm up: the dispatcher starts, imports are done
    except OSError:
        pass
    try:
        await asyncio.sleep(0.5)
        rss_before = worker_rss_kb(proc)
        started = time.monotonic()
        transports = await open_streams(system, port, stats, redis_url)
        connect_seconds = time.monotonic() - started
        await asyncio.sleep(2)
        rss_connected = worker_rss_kb(proc)
        result: dict[str, object] = {
            "system": system,
            "streams": stats.connected,
            "refused": stats.refused,
            "connect_s": connect_seconds,
            "rss_per_stream_kb": (rss_connected - rss_before) / max(1, stats.connected),
            "rss_mb": rss_connected / 1024,
        }
        if events:
            start_at = time.time() + 1.0
            publisher = multiprocessing.get_context("spawn").Process(
                target=publish_loop,
                args=(system, redis_url, stats.mode, args.streams, args.rate, events, start_at),
            )
            publisher.start()
            expected = expected_deliveries(stats)
            deadline = start_at + args.duration + args.drain
            while time.time() < deadline:
                await asyncio.sleep(0.2)
                if not publisher.is_alive() and stats.received >= expected:
                    break
            publisher.join(30)
            lat = sorted(stats.latencies)
            result.update(
                events=events,
                expected=expected,
                received=stats.received,
                lost=expected - stats.received,
                duplicates=stats.duplicates,
                p50_ms=_pct(lat, 50) * 1000,
                p99_ms=_pct(lat, 99) * 1000,
                max_ms=(lat[-1] if lat else float("nan")) * 1000,
                rss_after_mb=worker_rss_kb(proc) / 1024,
            )
        for transport in transports:
            transport.close()
        await asyncio.sleep(0.5)
        return result
    finally:
        stop(proc)


def _pct(values: list[float] | array, pct: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * pct / 100))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario", choices=["broadcast", "targeted", "idle"], default="broadcast"
    )
    parser.add_argument("--streams", type=int)
    parser.add_argument("--rate", type=float, help="events per second")
    parser.add_argument("--duration", type=float, default=20, help="seconds of publishing")
    parser.add_argument(
        "--drain", type=float, default=30, help="seconds to wait for late deliveries"
    )
    parser.add_argument("--systems", default="ours,flask_sse")
    args = parser.parse_args()
    defaults = {"broadcast": (5000, 20), "targeted": (5000, 1000), "idle": (10000, 0)}[
        args.scenario
    ]
    args.streams = args.streams or defaults[0]
    args.rate = args.rate if args.rate is not None else defaults[1]

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.streams + 1000)), hard)
    )

    results = []
    with RedisServer(extra_args=["--maxclients", str(2 * args.streams + 1000)]) as server:
        for system in args.systems.split(","):
            results.append(asyncio.run(run_system(system, server.url, args)))

    import flask_notifications

    print(f"scenario {args.scenario}: {args.streams} streams, {args.rate:g} events/s for "
          f"{args.duration:g} s; gunicorn -k gevent -w 1; python {sys.version.split()[0]}; "
          f"flask-notifications {flask_notifications.__version__}")  # fmt: skip
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
