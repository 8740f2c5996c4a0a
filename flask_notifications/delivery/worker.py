"""The worker side of delivery: run an event's consumers, retry, give up.

Two task bodies, both registered by :func:`~flask_notifications.delivery.registry.install`
and :func:`~flask_notifications.delivery.registry.ensure_task`, never at import:

- :func:`run_event`, the event task (``flask_notifications.deliver``): one
  broker message per event, whatever the number of consumers. It enqueues
  the consumers declared :attr:`~flask_notifications.consumers.Consumer.own_task`
  as tasks of their own, then runs the others one after another, each
  guarded by its own completion record. A consumer that fails with a
  transient error is retried by its own task, alone; one that fails for good
  leaves a dead letter. The others are neither delayed by the retry nor run
  again.
- :func:`run_consumer`, a consumer's own task (named after the consumer):
  one consumer, retried by Celery with backoff.

Neither captures anything: each finds its consumers through the Flask app it
runs in (hub id and consumer name from the message).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import redis
from celery.utils.time import get_exponential_backoff_interval
from flask import current_app

from .._state import get_state, has_state
from ..event import Event
from ..signals import consumer_failed, event_consumed
from ..workflows import throttle
from . import dead_letters, records
from . import log as delivery_log
from .apps import flask_app_for
from .event_records import EventRecords
from .tasks import ConsumerTask, args_repr, celery_expiry, consumer_running

if TYPE_CHECKING:
    from ..consumers.consumer import Consumer
    from ..event_hub import EventHub

logger = logging.getLogger("flask_notifications")

#: Seconds a worker waits for Redis to keep the record of a consumer that ran.
_RECORD_PATIENCE = 30.0

#: One consumer of an event: its hub, its task name, the consumer.
_Found = tuple["EventHub", str, "Consumer"]
#: A consumer that failed for good, with its exception.
_Failed = tuple["EventHub", str, Any, BaseException]


def run_event(task: ConsumerTask, event_json: str, targets: list[list[str]], app_key: str) -> None:
    """Run the consumers ``targets`` of one event (the event task's body).

    :param task: the event task.
    :param event_json: the event.
    :param targets: its ``[hub id, consumer task name]`` pairs.
    :param app_key: the key of the app that sent it.
    """
    state = get_state() if has_state() else None
    if state is None:
        logger.warning("no Flask-Notifications app in this worker; event task skipped")
        return
    app_key = app_key or state.app_key
    try:
        event = Event.from_json(event_json)
    except ValueError as exc:  # cannot get better by retrying
        event_id = _event_id(event_json)
        found, own = _find(state.extension, targets, event_id)
        letters = [(hub, name, consumer, exc) for hub, name, consumer in (*found, *own)]
        for hub, name, _, _ in letters:
            _log_give_up(name, hub, event_id, exc)
        if event_id is not None:  # the dead letters, and its outbox record gone
            letters_json = _letters(letters, app_key, event_json)
            EventRecords(records.redis_client(), app_key, event_id).finish(
                task.name, targets, [], letters_json
            )
        else:
            for hub, name, _, _ in letters:
                dead_letters.add_dead_letter(name, hub.hub_id, app_key, event_json, exc)
        _signal_failures(None, letters)
        return
    event_id = event["event_id"]
    if event.is_expired():
        logger.info("event %s expired before its consumers ran; skipped", event_id)
        records.finish_pending(task.name, targets, app_key, event_id)
        found, own = _find(state.extension, targets, event_id)
        _log_expired(event, [consumer for _, _, consumer in (*found, *own)])
        return
    config = current_app.config
    found, own = _find(state.extension, targets, event_id)
    due = time.time() + config["NOTIFICATIONS_REDELIVER_AFTER"]
    bookkeeping = EventRecords(records.redis_client(), app_key, event_id)
    done, enqueue = bookkeeping.begin(
        [[hub.hub_id, name] for hub, name, _ in found],
        [[hub.hub_id, name] for hub, name, _ in own],
        due,
    )
    expires = celery_expiry(event)
    tasks = task.app.tasks
    # First the consumers of their own (mail, push): a slow one never waits for these.
    for (hub, name, _), go in zip(own, enqueue, strict=True):
        if go:
            tasks[name].apply_async(
                (event_json, hub.hub_id, app_key),
                expires=expires,
                serializer="json",
                argsrepr=args_repr(event_id, hub.hub_id, app_key),
            )
    todo = [item for item, finished in zip(found, done, strict=True) if not finished]
    ttl = config["NOTIFICATIONS_DEDUP_TTL"]
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    retries: list[tuple[EventHub, str, Consumer, float]] = []
    failed: list[_Failed] = []
    finished: list[tuple[EventHub, Consumer]] = []  # their records sent
    logging_on = delivery_log.enabled()
    logged: list[delivery_log.Batch] = []  # the delivery log, written with the end
    metrics = state.metrics
    for hub, name, consumer in todo:
        started = time.perf_counter()
        with delivery_log.collecting(event_id) as run:
            try:
                with consumer_running(name):
                    narrowed = throttle.narrow(hub, consumer, event)
                    if narrowed is not None:  # None: held for every recipient
                        consumer(narrowed)
            except BaseException as exc:
                if not isinstance(exc, Exception):  # the worker stops: the event comes back
                    bookkeeping.abandon()
                    raise
                if isinstance(exc, consumer.retry_for) and consumer.max_retries > 0:
                    countdown = _backoff(consumer, 0)
                    logger.warning(
                        "consumer %r failed on event %s (%s); retry 1/%d in %ss",
                        name, event_id, exc, consumer.max_retries, countdown,
                    )  # fmt: skip
                    retries.append((hub, name, consumer, countdown))
                    outcome = "failed"
                else:
                    _log_give_up(name, hub, event_id, exc)
                    failed.append((hub, name, consumer, exc))
                    outcome = "dead"
                if metrics is not None:
                    elapsed = time.perf_counter() - started
                    metrics.consumer_run(name, "retry" if outcome == "failed" else "dead", elapsed)
                if logging_on:
                    logged += delivery_log.finish_run(run, consumer, event, outcome, exc)
                continue
        if metrics is not None:
            metrics.consumer_run(name, "ok", time.perf_counter() - started)
        bookkeeping.consumed(name, hub.hub_id, ttl)  # sent now, before the next one runs
        finished.append((hub, consumer))
        if logging_on:
            logged += delivery_log.finish_run(run, consumer, event, "ok")
    later = time.time() + config["NOTIFICATIONS_REDELIVER_AFTER"]
    bookkeeping.finish(
        task.name,
        targets,
        [(hub.hub_id, name, later + countdown) for hub, name, _, countdown in retries],
        _letters(failed, app_key, event_json),
        delivery_log.commands(event_id, logged) if logged else (),
    )
    for hub, consumer in finished:
        event_consumed.send(app, event=event, hub=hub, consumer=consumer)
    _signal_failures(event, failed)
    for hub, name, _, countdown in retries:
        # The consumer's own task, as its first retry: it counts its retries alone.
        tasks[name].apply_async(
            (event_json, hub.hub_id, app_key),
            countdown=countdown,
            retries=1,
            expires=expires,
            serializer="json",
            argsrepr=args_repr(event_id, hub.hub_id, app_key),
        )


def _find(
    extension: Any, targets: list[list[str]], event_id: str | None
) -> tuple[list[_Found], list[_Found]]:
    """The consumers of ``targets`` in this process: those the event task
    runs, and those that run as tasks of their own."""
    found: list[_Found] = []
    own: list[_Found] = []
    for hub_id, name in targets:
        hub = extension.get_hub_by_id(hub_id)
        consumer = hub.get_consumer(name) if hub is not None else None
        if consumer is None:
            logger.warning(
                "no consumer %r on hub %s in this process; event %s skipped for it",
                name, hub_id, event_id,
            )  # fmt: skip
            continue
        (own if getattr(consumer, "own_task", False) else found).append((hub, name, consumer))
    return found, own


def run_consumer(task: ConsumerTask, event_json: str, hub_id: str, app_key: str) -> None:
    """Run one consumer, the task's namesake, on one event (a consumer's own
    task), retried by Celery.

    :param task: the consumer's task.
    :param event_json: the event.
    :param hub_id: the hub.
    :param app_key: the key of the app that sent it.
    """
    state = get_state() if has_state() else None
    hub = state.extension.get_hub_by_id(hub_id) if state is not None else None
    consumer = hub.get_consumer(task.name) if hub is not None else None
    if state is None or hub is None or consumer is None:
        logger.warning("no consumer %r on hub %s in this process; event skipped", task.name, hub_id)
        return
    app_key = app_key or state.app_key
    try:
        event = Event.from_json(event_json)
    except ValueError as exc:  # cannot get better by retrying
        _give_up(task.name, consumer, hub, app_key, event_json, None, exc)
        return
    event_id = event["event_id"]
    if event.is_expired():
        logger.info("event %s expired before %r ran; skipped", event_id, task.name)
        records.finish_pending(task.name, hub_id, app_key, event_id)
        _log_expired(event, [consumer])
        return
    if records.is_done(task.name, hub_id, event_id):
        logger.info("event %s already consumed by %r; redelivery skipped", event_id, task.name)
        records.finish_pending(task.name, hub_id, app_key, event_id)
        return
    logging_on = delivery_log.enabled()
    metrics = state.metrics
    started = time.perf_counter()
    with delivery_log.collecting(event_id) as run:
        try:
            with consumer_running(task.name):
                narrowed = throttle.narrow(hub, consumer, event)
                if narrowed is not None:  # None: held for every recipient
                    consumer(narrowed)
        except Exception as exc:
            elapsed = time.perf_counter() - started
            retries = task.request.retries
            if isinstance(exc, consumer.retry_for) and retries < consumer.max_retries:
                countdown = _backoff(consumer, retries)
                wait = getattr(exc, "retry_after", None)  # the service's Retry-After
                if isinstance(wait, int | float) and wait > countdown:
                    countdown = min(float(wait), 3600.0)
                logger.warning(
                    "consumer %r failed on event %s (%s); retry %d/%d in %ss",
                    task.name, event_id, exc, retries + 1, consumer.max_retries, countdown,
                )  # fmt: skip
                config = current_app.config
                later = time.time() + countdown + config["NOTIFICATIONS_REDELIVER_AFTER"]
                records.postpone_pending(task.name, hub_id, app_key, event_id, later)
                if logging_on:
                    _write_log(
                        event_id, delivery_log.finish_run(run, consumer, event, "failed", exc)
                    )
                if metrics is not None:
                    metrics.consumer_run(task.name, "retry", elapsed)
                raise task.retry(
                    exc=exc, countdown=countdown, max_retries=consumer.max_retries
                ) from exc
            if logging_on:
                _write_log(event_id, delivery_log.finish_run(run, consumer, event, "dead", exc))
            if metrics is not None:
                metrics.consumer_run(task.name, "dead", elapsed)
            _give_up(task.name, consumer, hub, app_key, event_json, event, exc)
            return
    if metrics is not None:
        metrics.consumer_run(task.name, "ok", time.perf_counter() - started)
    ttl = current_app.config["NOTIFICATIONS_DEDUP_TTL"]
    entries = delivery_log.finish_run(run, consumer, event, "ok") if logging_on else []
    extra = delivery_log.commands(event_id, entries) if entries else ()
    # The consumer ran: its record must not be lost to a Redis restart (the
    # sweeper would run it again), so wait Redis out for a while.
    records.retry_while(
        (redis.ConnectionError, redis.TimeoutError),
        lambda: records.mark_done(task.name, hub_id, app_key, event_id, ttl, extra),
        time.monotonic() + _RECORD_PATIENCE,
    )
    event_consumed.send(current_app._get_current_object(), event=event, hub=hub, consumer=consumer)


def _log_expired_message(task_name: str, event_json: str, target: Any) -> None:
    """The delivery log of a task Celery discarded for having expired."""
    if not delivery_log.enabled():
        return
    event = Event.from_json(event_json)
    extension = get_state().extension
    if isinstance(target, str):  # a consumer's own task
        hub = extension.get_hub_by_id(target)
        consumer = hub.get_consumer(task_name) if hub is not None else None
        consumers = [consumer] if consumer is not None else []
    else:  # the event task
        found, own = _find(extension, target, event["event_id"])
        consumers = [consumer for _, _, consumer in (*found, *own)]
    _log_expired(event, consumers)


def _log_expired(event: Event, consumers: list[Consumer]) -> None:
    """Record the recipients of consumers an expired event skipped as ``suppressed``."""
    if not delivery_log.enabled():
        return
    batches: list[delivery_log.Batch] = []
    for consumer in consumers:
        batches += delivery_log.finish_run(None, consumer, event, "expired")
    _write_log(event["event_id"], batches)


def _write_log(event_id: str, batches: list[delivery_log.Batch]) -> None:
    if batches:
        delivery_log.write_batches({event_id: batches})


def _backoff(consumer: Consumer, retries: int) -> float:
    """Seconds before retry ``retries + 1`` of ``consumer`` (exponential, jittered)."""
    return get_exponential_backoff_interval(  # type: ignore[no-any-return]
        consumer.retry_backoff, retries, consumer.retry_backoff_max, consumer.retry_jitter
    )


def _log_give_up(name: str, hub: EventHub, event_id: str | None, exc: BaseException) -> None:
    logger.error(
        "consumer %r failed for good on event %s of hub %s: %s; kept as a dead letter",
        name, event_id or "?", hub.hub_id, exc, exc_info=exc,
    )  # fmt: skip


def _letters(failed: list[_Failed], app_key: str, event_json: str) -> list[str]:
    return [
        dead_letters.letter(name, hub.hub_id, app_key, event_json, exc)
        for hub, name, _, exc in failed
    ]


def _signal_failures(event: Event | None, failed: list[_Failed]) -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for hub, _, consumer, exc in failed:
        consumer_failed.send(app, event=event, hub=hub, consumer=consumer, exception=exc)


def _give_up(
    name: str,
    consumer: Consumer,
    hub: EventHub,
    app_key: str,
    event_json: str,
    event: Event | None,
    exc: BaseException,
) -> None:
    """Record a consumer's own task that failed for good: log, dead letter, signal."""
    event_id = event["event_id"] if event is not None else None
    _log_give_up(name, hub, event_id, exc)
    dead_letters.add_dead_letter(name, hub.hub_id, app_key, event_json, exc)
    if event_id is not None:
        records.finish_pending(name, hub.hub_id, app_key, event_id)
    _signal_failures(event, [(hub, name, consumer, exc)])


def _event_id(event_json: str) -> str | None:
    try:
        event_id = json.loads(event_json).get("event_id")
    except (ValueError, AttributeError):
        return None
    return event_id if isinstance(event_id, str) else None


def forget_expired(
    sender: Any = None, request: Any = None, expired: bool = False, **_: Any
) -> None:
    """``task_revoked`` receiver: Celery discards a task whose ``expires=``
    passed without running it; drop that task's outbox record, as the task
    would have done (the sweeper would otherwise enqueue it again).

    :param sender: the task.
    :param request: its request (the message's arguments).
    :param expired: whether it was discarded for having expired.
    """
    if not (expired and isinstance(sender, ConsumerTask) and request is not None):
        return
    args = list(getattr(request, "args", None) or ())
    if len(args) < 2 or not isinstance(args[0], str):
        return
    event_id = _event_id(args[0])
    if event_id is None:
        return
    app_key = args[2] if len(args) > 2 else None
    try:
        with flask_app_for(sender.app, app_key).app_context():
            records.finish_pending(sender.name, args[1], app_key or get_state().app_key, event_id)
            _log_expired_message(sender.name, args[0], args[1])
    except Exception:  # noqa: BLE001 - Redis down: the sweeper finds it, the task skips it
        logger.debug("could not drop the outbox record of an expired task", exc_info=True)
