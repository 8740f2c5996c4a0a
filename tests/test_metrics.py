"""Prometheus metrics (issue 17): scraped from gunicorn with two workers in
multiprocess mode, after events went through a real Celery worker (a
subprocess writing to the same PROMETHEUS_MULTIPROC_DIR) and streams opened."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

import pytest

# Imported before PROMETHEUS_MULTIPROC_DIR is set below: this process's own
# metrics stay single-process (prometheus_client picks the mode at import).
from prometheus_client.parser import text_string_to_metric_families

from flask_notifications import ConfigurationError, Notifications
from flask_notifications.metrics import Metrics, process_metrics

from .conftest import ROOT, wait_for, worker_process
from .sse_client import SSEClient


def scrape(base: str) -> dict[tuple[str, frozenset], float]:
    """``(sample name, labels) -> value`` of ``base``/metrics."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "pid"}
            key = (sample.name, frozenset(labels.items()))
            out[key] = out.get(key, 0.0) + sample.value
    return out


def value(samples, name, **labels) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def post(base: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        base + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


APP = "flask_notifications/stream_app"
PICKY = "stream_app.Picky"
PUSH = "flask_notifications.consumers.push_consumer.PushConsumer"


def test_gunicorn_two_workers_and_a_celery_worker(stream_process, redis_url, tmp_path, monkeypatch):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {"METRICS_ENDPOINT": "/metrics", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    for key, val in env.items():
        monkeypatch.setenv(key, val)  # the Celery worker subprocess gets them too
    # Heartbeats every 0.5 s: a closed client is noticed soon.
    base, _ = stream_process(
        "gunicorn", "-w", "2", "-c", "gunicorn_metrics.py", HEARTBEAT="0.5", **env
    )
    before = scrape(base)
    assert value(before, "flask_notifications_open_streams", app=APP) == 0
    assert value(before, "flask_notifications_events_sent_total") == 0

    url = base + "/notifications/stream/Jobs"
    streams = [SSEClient(url, headers={"X-User": "alice"}) for _ in range(3)]
    try:
        assert all(s.status == 200 for s in streams)
        wait_for(lambda: value(scrape(base), "flask_notifications_open_streams", app=APP) == 3)

        with worker_process("stream_app:celery", redis_url, cwd=ROOT / "tests"):
            for body in ("ok", "retry", "dead"):
                post(base, "/jobs", {"body": body})

            def settled():
                now = scrape(base)
                runs = "flask_notifications_consumer_runs_total"
                done = (
                    value(now, runs, consumer=PICKY, outcome="ok") == 2
                    and value(now, runs, consumer=PICKY, outcome="dead") == 1
                    and value(now, runs, consumer=PUSH, outcome="ok") == 3
                )
                return now if done else None

            after = wait_for(settled, 30)
        for stream in streams:  # each stream got the three events
            assert [json.loads(e["data"])["body"] for e in stream.events(3)] == [
                "ok", "retry", "dead",
            ]  # fmt: skip
        runs = "flask_notifications_consumer_runs_total"
        assert value(after, "flask_notifications_events_sent_total", app=APP, hub="Jobs") == 3
        assert value(after, runs, consumer=PICKY, outcome="retry") == 1
        assert value(after, runs, consumer=PUSH, outcome="retry") == 0
        assert value(after, runs, consumer=PUSH, outcome="dead") == 0
        assert value(after, "flask_notifications_dead_letters_total", consumer=PICKY) == 1
        duration = "flask_notifications_consumer_duration_seconds_count"
        assert value(after, duration, consumer=PICKY) == 4  # ok, retry, its rerun, dead
        assert value(after, duration, consumer=PUSH) == 3
        # Each web process with a dispatcher routed each of the three events.
        lag = value(after, "flask_notifications_dispatch_lag_seconds_count", app=APP)
        assert lag in (3, 6)
        inf = value(after, "flask_notifications_dispatch_lag_seconds_bucket", app=APP, le="+Inf")
        assert inf == lag

        # A reconnection with Last-Event-ID replays.
        assert value(after, "flask_notifications_replays_total", app=APP) == 0
        last = streams[0].last_event_id
        replaying = SSEClient(url, headers={"X-User": "alice", "Last-Event-ID": last})
        streams.append(replaying)
        assert replaying.status == 200
        now = wait_for(lambda: (s := scrape(base)) and value(
            s, "flask_notifications_open_streams", app=APP) == 4 and s, 10)  # fmt: skip
        assert value(now, "flask_notifications_replays_total", app=APP) == 1
    finally:
        for stream in streams:
            stream.close()
    wait_for(lambda: value(scrape(base), "flask_notifications_open_streams", app=APP) == 0)


def test_a_killed_worker_leaves_no_stream_counted(stream_process, tmp_path, monkeypatch):
    """child_exit (gunicorn_metrics.py) forgets a dead worker's live gauge."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {"METRICS_ENDPOINT": "/metrics", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    base, _ = stream_process("gunicorn", "-w", "1", "-c", "gunicorn_metrics.py", **env)
    with urllib.request.urlopen(base + "/health", timeout=10) as response:
        pid = json.loads(response.read())["pid"]
    stream = SSEClient(base + "/notifications/stream/Jobs", headers={"X-User": "alice"})
    try:
        wait_for(lambda: value(scrape(base), "flask_notifications_open_streams", app=APP) == 1)
        os.kill(pid, signal.SIGKILL)  # no chance to close its stream
        # A new worker answers; the dead one's stream is not counted any more.
        wait_for(lambda: _new_pid(base, pid), 20)
        assert value(scrape(base), "flask_notifications_open_streams", app=APP) == 0
        assert not any(Path(metrics_dir).glob(f"gauge_livesum_{pid}.db"))
    finally:
        stream.close()


def _new_pid(base, old):
    try:
        with urllib.request.urlopen(base + "/health", timeout=5) as response:
            return json.loads(response.read())["pid"] != old
    except OSError:
        return False


def test_off_by_default_and_many_apps_in_one_process(make_app):
    app = make_app()
    Notifications(app)
    assert app.extensions["notifications"]._states[app].metrics is None
    assert app.test_client().get("/metrics").status_code == 404
    # Several apps with metrics: one set of metric objects, no duplicate error.
    apps = [make_app(NOTIFICATIONS_METRICS_ENDPOINT="/metrics") for _ in range(3)]
    for one in apps:
        Notifications(one)
    assert process_metrics() is process_metrics()
    assert isinstance(process_metrics(), Metrics)
    text = apps[-1].test_client().get("/metrics").get_data(as_text=True)
    assert 'flask_notifications_open_streams{app="flask_notifications/tests"} 0.0' in text
    with pytest.raises(ConfigurationError, match="NOTIFICATIONS_METRICS_ENDPOINT"):
        Notifications(make_app(NOTIFICATIONS_METRICS_ENDPOINT="metrics"))
