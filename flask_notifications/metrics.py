"""Prometheus metrics (the ``metrics`` extra: ``prometheus_client``).

On when ``NOTIFICATIONS_METRICS`` is true; it defaults to whether
``NOTIFICATIONS_METRICS_ENDPOINT`` is set (e.g. ``"/metrics"``), the path at
which the app then answers the Prometheus text format. Off, nothing is
imported and nothing is counted.

Every metric carries an ``app`` label (the app's key, ``"<prefix>/<name>"``)
and only labels of bounded cardinality: hub labels, consumer task names and
outcomes, all fixed by the code; never event types, user ids or event ids.

The metrics, their labels and meanings, a multiprocess setup and sample
Grafana panels are in the documentation's *Operations* page.

The metric objects exist once per process (:func:`process_metrics`), in a
:class:`~prometheus_client.CollectorRegistry` of the library's own (not
Prometheus' default one): several apps in one process share them, told apart
by the ``app`` label, and creating a second app never raises "Duplicated
timeseries". They are made on first use by ``init_app``, never at import.

Several processes (gunicorn workers, Celery workers on the same host): set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the processes
start, as ``prometheus_client`` documents; the endpoint then reads every
process's files (:class:`~prometheus_client.multiprocess.MultiProcessCollector`);
the gauge sums the live processes only (``livesum``), and gunicorn's
``child_exit`` hook must call :func:`child_exit` (in ``gunicorn.conf.py``:
``from flask_notifications.metrics import child_exit``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

from flask import Flask, Response

from .errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Metrics", "child_exit", "enabled", "install", "process_metrics"]

_PREFIX = "flask_notifications_"
#: Seconds: from a few ms (one host) to the minutes of a backlog.
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The process's metric objects, in :attr:`registry`."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        #: The library's own registry (every metric below).
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_sent = Counter(
            _PREFIX + "events_sent", "Events enqueued, per hub that took them.",
            ["app", "hub"], registry=r,
        )  # fmt: skip
        self.consumer_runs = Counter(
            _PREFIX + "consumer_runs", "Consumer runs by outcome (ok, retry, dead).",
            ["app", "consumer", "outcome"], registry=r,
        )  # fmt: skip
        self.consumer_duration = Histogram(
            _PREFIX + "consumer_duration_seconds", "Time of one consumer run.",
            ["app", "consumer"], buckets=_DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.open_streams = Gauge(
            _PREFIX + "open_streams", "Open SSE streams.",
            ["app"], multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.dispatch_lag = Histogram(
            _PREFIX + "dispatch_lag_seconds",
            "From an event's publication to its routing by a web process's dispatcher.",
            ["app"], buckets=_LAG_BUCKETS, registry=r,
        )  # fmt: skip
        self.replays = Counter(
            _PREFIX + "replays", "Stream reconnections replaying history (Last-Event-ID).",
            ["app"], registry=r,
        )  # fmt: skip
        self.dead_letters = Counter(
            _PREFIX + "dead_letters", "Dead letters left by consumers that failed for good.",
            ["app", "consumer"], registry=r,
        )  # fmt: skip
        self.dead_letters_replayed = Counter(
            _PREFIX + "dead_letters_replayed", "Dead letters enqueued again.",
            ["app"], registry=r,
        )  # fmt: skip

    def for_app(self, app_key: str) -> AppMetrics:
        """The metrics of one app (their ``app`` label bound).

        :param app_key: the app's key.
        """
        return AppMetrics(self, app_key)


class AppMetrics:
    """The metrics of one app, with the children that do not depend on the
    event bound once (a child lookup per event is a dict lookup and a lock).

    :param metrics: the process's metrics.
    :param app_key: the app's key (the ``app`` label).
    """

    def __init__(self, metrics: Metrics, app_key: str) -> None:
        self.metrics = metrics
        self.app = app_key
        self.open_streams = metrics.open_streams.labels(app_key)
        self.dispatch_lag = metrics.dispatch_lag.labels(app_key)
        self.replays = metrics.replays.labels(app_key)
        self.dead_letters_replayed = metrics.dead_letters_replayed.labels(app_key)
        self.open_streams.set(0)  # shown at 0 before the first stream

    def sent(self, hub: str) -> None:
        """Count an event enqueued for ``hub``.

        :param hub: the hub's label.
        """
        self.metrics.events_sent.labels(self.app, hub).inc()

    def consumer_run(self, consumer: str, outcome: str, seconds: float) -> None:
        """Count one consumer run and its time.

        :param consumer: the consumer's task name.
        :param outcome: ``"ok"``, ``"retry"`` or ``"dead"``.
        :param seconds: how long it ran.
        """
        self.metrics.consumer_runs.labels(self.app, consumer, outcome).inc()
        self.metrics.consumer_duration.labels(self.app, consumer).observe(seconds)
        if outcome == "dead":
            self.metrics.dead_letters.labels(self.app, consumer).inc()

    def lag(self, keys: list[Any]) -> None:
        """Observe the dispatch lag of routed events, from their history keys
        (a Redis Stream id's ``(milliseconds, sequence)``; other backends'
        keys are skipped).

        :param keys: the events' keys.
        """
        now = time.time()
        observe = self.dispatch_lag.observe
        for key in keys:
            if type(key) is tuple and key and type(key[0]) is int:
                observe(max(0.0, now - key[0] / 1000.0))


_lock = threading.Lock()
_process: Metrics | None = None


def process_metrics() -> Metrics:
    """The process's :class:`Metrics`, made on first call.

    Why one per process: Prometheus metrics are per process by nature (in
    multiprocess mode, one set of files per process and metric name); an
    ``app`` label tells apps apart.

    :raises ConfigurationError: without ``prometheus_client``.
    """
    global _process
    with _lock:
        if _process is None:
            try:
                _process = Metrics()
            except ImportError as exc:
                raise ConfigurationError(
                    "NOTIFICATIONS_METRICS needs prometheus_client: "
                    "pip install 'Flask-Notifications[metrics]'"
                ) from exc
        return _process


def enabled(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` turns metrics on (see the module's documentation).

    :param config: the app's configuration.
    """
    setting = config.get("NOTIFICATIONS_METRICS")
    if setting is None:
        return bool(config.get("NOTIFICATIONS_METRICS_ENDPOINT"))
    return bool(setting)


def install(app: Flask, app_key: str) -> AppMetrics | None:
    """Set up the metrics of ``app`` (by ``init_app``): its
    :class:`AppMetrics`, and the endpoint when ``NOTIFICATIONS_METRICS_ENDPOINT``
    is set; ``None`` when metrics are off.

    :param app: the Flask app.
    :param app_key: its key.
    :raises ConfigurationError: for an endpoint that is not a path, or
        without ``prometheus_client``.
    """
    config = app.config
    if not enabled(config):
        return None
    endpoint = config.get("NOTIFICATIONS_METRICS_ENDPOINT")
    if endpoint is not None and not (isinstance(endpoint, str) and endpoint.startswith("/")):
        raise ConfigurationError(
            f"NOTIFICATIONS_METRICS_ENDPOINT must be None or a path such as '/metrics', "
            f"not {endpoint!r}"
        )
    metrics = process_metrics().for_app(app_key)
    if endpoint:
        app.add_url_rule(endpoint, "notifications_metrics", _expose, methods=["GET"])
    return metrics


def _expose() -> Response:
    """The metrics in Prometheus' text format: every process's under
    ``PROMETHEUS_MULTIPROC_DIR``, else this process's."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = process_metrics().registry
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook for multiprocess mode: forget a dead
    worker's live gauges (``from flask_notifications.metrics import child_exit``
    in ``gunicorn.conf.py``).

    :param server: gunicorn's arbiter.
    :param worker: the worker that exited.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
