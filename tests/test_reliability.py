"""Delivery guarantees: retries, dead letters, replay, dedup, completion records,
an unavailable broker, signals and the stream rate limit, on real Redis and Celery."""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import datetime, timedelta

import pytest
from celery.signals import before_task_publish

from flask_notifications import Event, Notifications, NotificationsUnavailable, reliability
from flask_notifications.consumers import Consumer, LogConsumer
from flask_notifications.delivery.tasks import EVENT_TASK, FAN_OUT_TASK
from flask_notifications.filters import WithEventType
from flask_notifications.signals import consumer_failed, event_consumed, event_filtered, event_sent
from flask_notifications.testing import RedisServer

from .conftest import wait_for


def ev(title="t", **kw):
    return Event(None, "test", title, "b", **kw)


class Flaky(Consumer):
    """Fails with ``error`` for its first ``failures`` calls, then records the event."""

    retry_backoff = 0  # no waiting between retries in tests

    def __init__(self, failures, error=None):
        self.failures, self.calls, self.done = failures, 0, []
        self.error = error or ConnectionError("broker busy")

    def consume(self, event, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        self.done.append(event["event_id"])


def test_consumer_tasks_are_at_least_once(app, notifications):
    hub = notifications.create_hub("H")
    hub.register_consumer(lambda e: None, celery_task_name="tests.reliability.options")
    task = app.extensions["notifications"].celery.tasks["tests.reliability.options"]
    assert task.acks_late is True and task.reject_on_worker_lost is True
    assert task.serializer == "json"


def test_transient_errors_are_retried_with_backoff(app, notifications, worker):
    flaky = Flaky(failures=2)
    notifications.create_hub("H").register_consumer(
        flaky, celery_task_name="tests.reliability.flaky"
    )
    consumed = []
    event_consumed.connect(
        lambda sender, **kw: consumed.append(kw["event"]["event_id"]), weak=False
    )
    try:
        with app.app_context(), worker(app):
            sent = notifications.send(ev())
            wait_for(lambda: flaky.done, 15)
    finally:
        event_consumed.receivers.clear()
    assert flaky.calls == 3 and flaky.done == [sent["event_id"]]
    assert consumed == [sent["event_id"]]
    with app.app_context():
        assert reliability.dead_letters() == []


def test_backoff_grows_and_is_jittered():
    from celery.utils.time import get_exponential_backoff_interval

    consumer = Consumer()
    waits = [
        get_exponential_backoff_interval(
            consumer.retry_backoff, n, consumer.retry_backoff_max, False
        )
        for n in range(12)
    ]
    assert waits[:5] == [2, 4, 8, 16, 32] and max(waits) == 600
    jittered = {get_exponential_backoff_interval(2, 5, 600, True) for _ in range(50)}
    assert len(jittered) > 1 and max(jittered) <= 64


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_permanent_errors_become_dead_letters_at_once(app, notifications, worker):
    # The worker takes over the root logger, so listen on the library's own.
    records = _Records()
    logging.getLogger("flask_notifications").addHandler(records)
    broken = Flaky(failures=99, error=KeyError("a bug"))
    notifications.create_hub("H").register_consumer(
        broken, celery_task_name="tests.reliability.broken"
    )
    failed = []
    consumer_failed.connect(lambda sender, **kw: failed.append(kw), weak=False)
    try:
        with app.app_context(), worker(app):
            sent = notifications.send(ev())
            wait_for(lambda: failed, 15)
            letters = reliability.dead_letters()
    finally:
        consumer_failed.receivers.clear()
        logging.getLogger("flask_notifications").removeHandler(records)
    assert broken.calls == 1  # not retried
    assert failed[0]["event"]["event_id"] == sent["event_id"] and isinstance(
        failed[0]["exception"], KeyError
    )
    (letter,) = letters
    assert letter["task"] == "tests.reliability.broken" and "KeyError" in letter["error"]
    assert Event.from_json(letter["event"]) == sent
    assert any(sent["event_id"] in line and "dead letter" in line for line in records.lines)


def test_retries_run_out_then_replay_delivers(app, notifications, worker):
    flaky = Flaky(failures=3)
    flaky.max_retries = 2
    notifications.create_hub("H").register_consumer(
        flaky, celery_task_name="tests.reliability.tired"
    )
    with app.app_context(), worker(app):
        sent = notifications.send(ev())
        wait_for(lambda: reliability.dead_letters(), 15)
        assert flaky.calls == 3 and flaky.done == []
        # The operator replays once the problem is gone (the 4th call succeeds).
        runner = app.test_cli_runner()
        listing = runner.invoke(args=["notifications", "dead-letters"])
        assert "tests.reliability.tired" in listing.output and sent["event_id"] in listing.output
        result = runner.invoke(args=["notifications", "replay"])
        assert "replayed 1 dead letter(s)" in result.output
        wait_for(lambda: flaky.done, 15)
    assert flaky.done == [sent["event_id"]]
    with app.app_context():
        assert reliability.dead_letters() == []


def test_hubs_command(app, notifications):
    hub = notifications.create_hub("News", public=True)
    hub.filter_by(WithEventType("news"))
    hub.register_consumer(LogConsumer("/dev/null"))
    result = app.test_cli_runner().invoke(args=["notifications", "hubs"])
    assert result.exit_code == 0
    assert f"News  ({hub.hub_id}, public)" in result.output
    assert "WithEventType('news')" in result.output and "LogConsumer" in result.output


def test_send_ignores_an_event_id_it_already_sent(make_app, redis_client):
    app = make_app(NOTIFICATIONS_DEDUP_TTL=1)
    notifications = Notifications(app)
    notifications.create_hub("H").register_consumer(
        lambda e: None, celery_task_name="tests.reliability.dedup"
    )
    event = ev()
    with app.app_context():
        notifications.send(event)
        notifications.send(event)
        notifications.send(event.to_json())
        assert redis_client.llen("celery") == 1
        time.sleep(1.1)  # NOTIFICATIONS_DEDUP_TTL passed
        notifications.send(event)
        assert redis_client.llen("celery") == 2


def test_a_redelivered_task_whose_first_run_finished_does_not_run_again(app, notifications):
    calls = []
    hub = notifications.create_hub("H")
    hub.register_consumer(
        lambda e: calls.append(e["event_id"]), celery_task_name="tests.reliability.once"
    )
    task = app.extensions["notifications"].celery.tasks["tests.reliability.once"]
    event = ev()
    with app.app_context():
        task.apply((event.to_json(), hub.hub_id, app.name))
        task.apply((event.to_json(), hub.hub_id, app.name))  # redelivered
        task.apply((ev().to_json(), hub.hub_id, app.name))
    assert calls == [event["event_id"], calls[-1]] and len(calls) == 2


def test_send_raises_when_redis_is_down_and_never_claims_success(make_app, tmp_path):
    server = RedisServer(directory=tmp_path).start()
    url = server.url
    server.stop(keep_directory=True)  # nothing listens on that port now
    app = make_app(
        NOTIFICATIONS_REDIS_URL=url, CELERY_BROKER_URL=url, NOTIFICATIONS_SEND_TIMEOUT=0.5
    )
    notifications = Notifications(app)
    notifications.create_hub("H").register_consumer(
        lambda e: None, celery_task_name="tests.reliability.down"
    )
    event = ev()
    started = time.monotonic()
    with app.app_context(), pytest.raises(NotificationsUnavailable, match=event["event_id"]):
        notifications.send(event)
    assert time.monotonic() - started < 10
    # Redis is back: the same event can be sent (its id was not kept as sent).
    server.start()
    try:
        with app.app_context():
            assert notifications.send(event) is event
    finally:
        server.stop()


def test_observability_signals(app, notifications):
    notifications.create_hub("Tests").filter_by(WithEventType("test")).register_consumer(
        lambda e: None, celery_task_name="tests.reliability.signals"
    )
    other = notifications.create_hub("Others").filter_by(WithEventType("other"))
    seen = []
    event_sent.connect(lambda sender, **kw: seen.append(("sent", kw["tasks"])), weak=False)
    event_filtered.connect(
        lambda sender, **kw: seen.append(("filtered", kw["hub"].label)), weak=False
    )
    try:
        with app.app_context():
            notifications.send(ev())
    finally:
        event_sent.receivers.clear()
        event_filtered.receivers.clear()
    assert seen == [("filtered", other.label), ("sent", 1)]


def test_dead_letter_listing_is_json(app, notifications, redis_client):
    with app.app_context():
        reliability.add_dead_letter("t", "h", "a", ev().to_json(), OSError("x"))
        (letter,) = reliability.dead_letters()
    assert json.loads(redis_client.lindex("flask_notifications:dead_letters", 0))["task"] == "t"
    assert letter["error"] == "OSError: x" and letter["failed_at"] > 0


def test_a_task_the_broker_lost_is_enqueued_again(make_app, worker, redis_client):
    app = make_app(NOTIFICATIONS_REDELIVER_AFTER=0.5)
    notifications = Notifications(app)
    done = []
    notifications.create_hub("H").register_consumer(
        lambda e: done.append(e["event_id"]), celery_task_name="tests.reliability.lost"
    )
    with app.app_context():
        sent = notifications.send(ev())
        assert reliability.pending_count() == 1
        redis_client.delete("celery")  # the broker loses the message
        assert reliability.redeliver_pending(0.5) == 0  # not overdue yet
        time.sleep(0.6)
        assert reliability.redeliver_pending(0.5) == 1
        assert redis_client.llen("celery") == 1
        with worker(app):
            wait_for(lambda: done, 15)
            wait_for(lambda: reliability.pending_count() == 0, 5)
        assert reliability.redeliver_pending(0.5) == 0  # finished: nothing left to sweep
    assert done == [sent["event_id"]]


def test_finished_skipped_and_dead_tasks_leave_nothing_pending(app, notifications, worker):
    notifications.create_hub("H").register_consumer(
        lambda e: None, celery_task_name="tests.reliability.ok"
    )
    notifications.create_hub("Bad").register_consumer(
        Flaky(failures=9, error=KeyError("bug")), celery_task_name="tests.reliability.bad"
    )
    with app.app_context(), worker(app):
        notifications.send(ev())
        wait_for(lambda: reliability.dead_letters(), 15)
        wait_for(lambda: reliability.pending_count() == 0, 15)


def test_an_event_task_lost_or_run_twice_still_runs_each_consumer_once(
    make_app, worker, redis_client
):
    app = make_app(NOTIFICATIONS_REDELIVER_AFTER=0.5)
    notifications = Notifications(app)
    done = []
    for name in ("a", "b", "c"):
        notifications.create_hub(name).register_consumer(
            lambda e, name=name: done.append(name), celery_task_name=f"tests.reliability.fo{name}"
        )
    with app.app_context():
        notifications.send(ev())
        assert reliability.pending_count() == 1  # the event task
        lost = redis_client.lrange("celery", 0, -1)
        redis_client.delete("celery")  # the broker loses it
        time.sleep(0.6)
        assert reliability.redeliver_pending(0.5) == 1
        redis_client.rpush("celery", *lost)  # ... and the lost copy turns up too
        with worker(app):
            wait_for(lambda: sorted(done) == ["a", "b", "c"], 15)
            wait_for(lambda: reliability.pending_count() == 0, 5)
            time.sleep(0.5)
    assert sorted(done) == ["a", "b", "c"]


def body_args(message):
    """The positional arguments of a raw Celery message."""
    return json.loads(base64.b64decode(message["body"]))[0]


class Own(Consumer):
    """A consumer with a task of its own."""

    own_task = True

    def __init__(self, name, done=None):
        self.name, self.done = name, done if done is not None else []

    def consume(self, event, *args, **kwargs):
        self.done.append(self.name)


def test_own_tasks_an_event_task_enqueued_are_in_the_outbox(make_app, redis_client):
    app = make_app(NOTIFICATIONS_REDELIVER_AFTER=0.5)
    notifications = Notifications(app)
    for name in ("a", "b"):
        notifications.create_hub(name).register_consumer(
            Own(name), celery_task_name=f"tests.reliability.out{name}"
        )
    with app.app_context():
        notifications.send(ev())
        message = json.loads(redis_client.lpop("celery"))
        assert message["headers"]["task"] == EVENT_TASK
        args = json.loads(base64.b64decode(message["body"]))[0]
        notifications.celery.tasks[EVENT_TASK].apply(args)
        assert reliability.pending_count() == 2  # the two own tasks, not the event task
        assert redis_client.llen("celery") == 2
        notifications.celery.tasks[EVENT_TASK].apply(args)  # redelivered: enqueues nothing
        assert redis_client.llen("celery") == 2
        redis_client.delete("celery")  # the broker loses both
        time.sleep(0.6)
        assert reliability.redeliver_pending(0.5) == 2
    tasks = sorted(
        json.loads(raw)["headers"]["task"] for raw in redis_client.lrange("celery", 0, -1)
    )
    assert tasks == ["tests.reliability.outa", "tests.reliability.outb"]


def test_a_consumer_raising_once_is_retried_alone(app, notifications, worker):
    """One event, 3 consumers, the second raising once: the first and third
    run once, the second twice, in one broker message plus one retry."""
    runs = []
    hub = notifications.create_hub("Three")
    hub.register_consumer(lambda e: runs.append("first"), celery_task_name="tests.rel.first")
    flaky = Flaky(failures=1)
    hub.register_consumer(flaky, celery_task_name="tests.rel.second")
    hub.register_consumer(lambda e: runs.append("third"), celery_task_name="tests.rel.third")
    published = []

    def count(sender=None, headers=None, **_):
        published.append(headers["task"])

    before_task_publish.connect(count, weak=False)
    try:
        with app.app_context(), worker(app):
            sent = notifications.send(ev())
            wait_for(lambda: flaky.done, 15)
            wait_for(lambda: reliability.pending_count() == 0, 5)
            time.sleep(0.3)
            assert reliability.dead_letters() == []
    finally:
        before_task_publish.disconnect(count)
    assert runs == ["first", "third"]  # once each, not held up by the retry
    assert flaky.calls == 2 and flaky.done == [sent["event_id"]]
    assert published == [EVENT_TASK, "tests.rel.second"]  # the event, then the retry


def test_an_event_task_delivered_again_leaves_a_retried_consumer_to_its_retry(
    app, notifications, worker, redis_client
):
    """The worker hands the second consumer to a retry of its own, then the
    event task comes back (the worker died before acknowledging it): the
    redelivered event task must not run the second consumer beside its retry."""
    runs = []
    hub = notifications.create_hub("Three")
    hub.register_consumer(lambda e: runs.append("first"), celery_task_name="tests.rel.again1")
    flaky = Flaky(failures=1)
    hub.register_consumer(flaky, celery_task_name="tests.rel.again2")
    with app.app_context():
        sent = notifications.send(ev())
        (message,) = redis_client.lrange("celery", 0, -1)
        body = json.loads(base64.b64decode(json.loads(message)["body"]))
        event_task = notifications.celery.tasks[EVENT_TASK]
        event_task.apply(args=body[0])  # first run: the second consumer fails once
        assert runs == ["first"] and flaky.calls == 1
        event_task.apply(args=body[0])  # delivered again before its acknowledgement
        assert runs == ["first"] and flaky.calls == 1  # neither runs a second time
        redis_client.lrem("celery", 0, message)  # the event message, acknowledged now
        with worker(app):  # the retry of its own runs the second consumer
            wait_for(lambda: flaky.done, 15)
            wait_for(lambda: reliability.pending_count() == 0, 5)
    assert flaky.calls == 2 and flaky.done == [sent["event_id"]]


def test_a_slow_consumer_does_not_delay_another(app, notifications, worker):
    order = []

    class Slow(Consumer):
        own_task = True

        def consume(self, event, *args, **kwargs):
            order.append("slow started")
            time.sleep(1)
            order.append("slow finished")

    hub = notifications.create_hub("Mixed")
    hub.register_consumer(Slow(), celery_task_name="tests.rel.slow")  # registered first
    hub.register_consumer(lambda e: order.append("fast"), celery_task_name="tests.rel.fast")
    with app.app_context(), worker(app):
        notifications.send(ev())
        wait_for(lambda: "slow finished" in order and "fast" in order, 15)
    assert order.index("fast") < order.index("slow finished")


def test_an_expired_task_that_is_skipped_clears_its_outbox_record(
    app, notifications, worker, redis_client
):
    done = []
    hub = notifications.create_hub("Expiring").filter_by(WithEventType("test"))
    hub.register_consumer(lambda e: done.append(1), celery_task_name="tests.rel.exp1")
    hub.register_consumer(lambda e: done.append(2), celery_task_name="tests.rel.exp2")
    single = notifications.create_hub("Single").filter_by(WithEventType("single"))
    single.register_consumer(lambda e: done.append(3), celery_task_name="tests.rel.exp3")
    soon = datetime.now() + timedelta(seconds=1)
    with app.app_context():
        notifications.send(ev(expiration_datetime=soon))  # the event task
        notifications.send(Event(None, "single", "t", "b", expiration_datetime=soon))
        messages = redis_client.lrange("celery", 0, -1)
        assert reliability.pending_count() == 2
        time.sleep(1.3)
        with worker(app):  # Celery discards both unrun
            wait_for(lambda: reliability.pending_count() == 0, 10)
        # Run by a worker that did not check expires (a sweeper's copy): skipped too.
        redis_client.delete("celery")
        tasks = notifications.celery.tasks
        for raw in messages:
            message = json.loads(raw)
            name, (event_json, target, app_key) = message["headers"]["task"], body_args(message)
            member = [name, target, app_key, json.loads(event_json)["event_id"]]
            redis_client.zadd(
                reliability.pending_key(), {json.dumps(member, separators=(",", ":")): 0}
            )
            tasks[name].apply((event_json, target, app_key))
            assert reliability.pending_count() == 0
    assert done == []


def test_an_event_task_with_an_invalid_event_leaves_dead_letters(app, notifications):
    hub = notifications.create_hub("H")
    for name in ("a", "b"):
        hub.register_consumer(lambda e: None, celery_task_name=f"tests.rel.invalid{name}")
    targets = [[hub.hub_id, "tests.rel.invalida"], [hub.hub_id, "tests.rel.invalidb"]]
    task = notifications.celery.tasks[EVENT_TASK]
    with app.app_context():
        for bad in ('{"event_id": "e-bad", "title": 5}', "{not json"):
            task.apply((bad, targets, "flask_notifications/tests"))
        letters = reliability.dead_letters()
    assert sorted((d["task"], d["event"][:10]) for d in letters) == [
        ("tests.rel.invalida", '{"event_id'),
        ("tests.rel.invalida", "{not json"),
        ("tests.rel.invalidb", '{"event_id'),
        ("tests.rel.invalidb", "{not json"),
    ]


def test_the_fan_out_task_of_earlier_versions_still_runs_its_consumers(app, notifications):
    """Messages and outbox records left under the old name run the consumers."""
    done = []
    hub = notifications.create_hub("H")
    for name in ("a", "b"):
        hub.register_consumer(
            lambda e, name=name: done.append(name), celery_task_name=f"tests.rel.old{name}"
        )
    targets = [[hub.hub_id, "tests.rel.olda"], [hub.hub_id, "tests.rel.oldb"]]
    with app.app_context():
        notifications.celery.tasks[FAN_OUT_TASK].apply((ev().to_json(), targets, None))
    assert done == ["a", "b"]
