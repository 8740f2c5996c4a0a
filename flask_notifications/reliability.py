"""Delivery bookkeeping in Redis: sent event ids, completed consumers, dead letters.

- ``send()`` records each event id for ``NOTIFICATIONS_DEDUP_TTL`` seconds and
  ignores an id it has already sent.
- A consumer task records ``(consumer, hub, event id)`` after ``consume``
  succeeds: a redelivered task whose first run finished does not run again,
  while one whose run died half way does.
- A consumer that fails for good leaves a dead letter, which an operator can
  list and replay (``flask notifications replay``).

These need the default Redis client (``init_app(broker=...)`` a
:class:`redis.Redis`); with another broker client they are skipped. Every key
starts with the app's ``NOTIFICATIONS_REDIS_PREFIX``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from flask import current_app

from ._state import get_state
from ._text import printable


def _key(*parts: str) -> str:
    return get_state().key(*parts)


def dead_letters_key() -> str:
    """The current app's Redis list of dead letters (JSON objects), newest first."""
    return _key("dead_letters")


def pending_key() -> str:
    """The current app's Redis sorted set of enqueued consumer tasks not
    finished yet (score: due time)."""
    return _key("pending")


def _client() -> redis.Redis | None:
    client = get_state().redis
    return client if isinstance(client, redis.Redis) else None


def release_event_id(event_id: str) -> None:
    """Forget ``event_id`` (its send failed), so the caller may send it again.

    :param event_id: the event's id.
    """
    client = _client()
    if client is not None:
        try:
            client.delete(_key("sent", event_id))
        except redis.RedisError:
            pass  # Redis is down: the key expires anyway


def _done_key(task_name: str, hub_id: str, event_id: str) -> str:
    return _key("done", hub_id, task_name, event_id)


def _pending_member(
    task_name: str, hub_id: str | list[list[str]], app_key: str, event_id: str
) -> str:
    # The member carries all a redelivery needs (the event itself is stored once).
    return json.dumps([task_name, hub_id, app_key, event_id], separators=(",", ":"))


# Claim the event id and record its tasks in the outbox in one command: this
# runs on every send(), so one EVALSHA beats a pipeline of 1 + 2n commands.
_CLAIM_AND_RECORD = """
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[1])
local members = {}
for i = 4, #ARGV do
  members[#members + 1] = ARGV[2]
  members[#members + 1] = ARGV[i]
end
redis.call('ZADD', KEYS[2], 'NX', unpack(members))
return 1
"""


def claim_and_record(
    event_id: str,
    ttl: int,
    tasks: list[tuple[str, str | list[list[str]], str]],
    event_json: str,
    due: float,
) -> bool:
    """Claim ``event_id`` as sent, and record its consumer tasks in the outbox,
    in one round trip (a script): nothing is recorded for an id already sent.

    If the broker loses one of the tasks (a Redis restart can strand a message
    a worker had just taken), :func:`redeliver_pending` enqueues it again.

    :param event_id: the event's id.
    :param ttl: seconds to remember the id (and the event, for redelivery).
    :param tasks: ``(task name, hub id, app name)`` triples about to be enqueued
        (for the fan-out task, the hub id is its list of targets).
    :param event_json: the event.
    :param due: when to consider the tasks lost if unfinished (epoch seconds).
    :returns: ``False`` if the event id was already sent.
    """
    client = _client()
    if client is None:
        return True
    script = client.__dict__.get("_fn_claim_and_record")
    if script is None:  # registered once per client
        script = client.__dict__["_fn_claim_and_record"] = client.register_script(_CLAIM_AND_RECORD)
    args: list[Any] = [ttl, due, event_json]
    args += [
        _pending_member(task_name, hub_id, app_key, event_id)
        for task_name, hub_id, app_key in tasks
    ]
    keys = [_key("sent", event_id), pending_key(), _key("pending_event", event_id)]
    return bool(script(keys=keys, args=args))


def hand_over(
    fan_out_task: str, targets: list[list[str]], app_key: str, event_id: str, due: float
) -> None:
    """Replace the fan-out task's outbox record by its consumer tasks' records
    (one transaction), just before the fan-out task enqueues them.

    :param fan_out_task: the fan-out task's name.
    :param targets: its ``[hub id, consumer task name]`` pairs.
    :param app_key: the Flask app's key.
    :param event_id: the event's id.
    :param due: when to consider the consumer tasks lost if unfinished.
    """
    client = _client()
    if client is None:
        return
    pipe = client.pipeline(transaction=True)
    members = {_pending_member(name, hub_id, app_key, event_id): due for hub_id, name in targets}
    pipe.zadd(pending_key(), members, nx=True)
    pipe.zrem(pending_key(), _pending_member(fan_out_task, targets, app_key, event_id))
    pipe.execute()


def postpone_pending(task_name: str, hub_id: str, app_key: str, event_id: str, due: float) -> None:
    """Move a pending task's deadline (it is being retried later).

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param app_key: the Flask app's key.
    :param event_id: the event's id.
    :param due: the new deadline (epoch seconds).
    """
    client = _client()
    if client is not None:
        member = _pending_member(task_name, hub_id, app_key, event_id)
        client.zadd(pending_key(), {member: due}, xx=True)


def finish_pending(
    task_name: str, hub_id: str | list[list[str]], app_key: str, event_id: str
) -> None:
    """Forget a pending task (finished, skipped, or a dead letter now).

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param app_key: the Flask app's key.
    :param event_id: the event's id.
    """
    client = _client()
    if client is not None:
        client.zrem(pending_key(), _pending_member(task_name, hub_id, app_key, event_id))


def redeliver_pending(delay: float, limit: int = 1000) -> int:
    """Enqueue again the consumer tasks still unfinished past their deadline.

    One process at a time (a Redis lock). A task that did finish meanwhile is
    skipped by its completion record, so nothing runs twice.

    :param delay: seconds until a redelivered task counts as lost again.
    :param limit: at most this many per call.
    :returns: how many were enqueued again.
    """
    client = _client()
    lock = _key("sweep_lock")
    if client is None or not client.set(lock, 1, nx=True, ex=30):
        return 0
    pending = pending_key()
    try:
        now = time.time()
        members = client.zrangebyscore(pending, 0, now, start=0, num=limit)
        if not members:
            return 0
        tasks = get_state().celery.tasks
        count = 0
        for member in members:
            task_name, hub_id, app_key, event_id = json.loads(member)
            event_json = client.get(_key("pending_event", event_id))
            if event_json is None:  # older than the dedup TTL: give it up
                client.zrem(pending, member)
                continue
            task = tasks.get(task_name)
            if task is None:
                continue
            client.zadd(pending, {member: now + delay})
            event_json = event_json.decode() if isinstance(event_json, bytes) else event_json
            task.apply_async((event_json, hub_id, app_key), serializer="json")
            count += 1
        return count
    finally:
        client.delete(lock)


def pending_count() -> int:
    """How many enqueued consumer tasks are not finished yet."""
    client = _client()
    return int(client.zcard(pending_key())) if client is not None else 0


def is_done(task_name: str, hub_id: str, event_id: str) -> bool:
    """Whether this consumer already consumed this event.

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param event_id: the event's id.
    """
    client = _client()
    return client is not None and bool(client.exists(_done_key(task_name, hub_id, event_id)))


def mark_done(task_name: str, hub_id: str, app_key: str, event_id: str, ttl: int) -> None:
    """Record that this consumer consumed this event, and drop its outbox
    record (one round trip).

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param app_key: the Flask app's key.
    :param event_id: the event's id.
    :param ttl: seconds to remember it.
    """
    client = _client()
    if client is not None:
        pipe = client.pipeline(transaction=False)
        pipe.set(_done_key(task_name, hub_id, event_id), 1, ex=ttl)
        pipe.zrem(pending_key(), _pending_member(task_name, hub_id, app_key, event_id))
        pipe.execute()


def _delivered_key(task_name: str, event_id: str, target: str) -> str:
    return _key("delivered", task_name, event_id, target)


def delivered(task_name: str, event_id: str, targets: list[str]) -> set[str]:
    """Which of ``targets`` (mail addresses, push endpoints...) this consumer
    already delivered this event to: a retried task skips them, so a failure
    half way through the recipients never sends anyone the event twice.

    :param task_name: the consumer's task name.
    :param event_id: the event's id.
    :param targets: the delivery targets.
    """
    client = _client()
    if client is None or not targets:
        return set()
    found = client.mget([_delivered_key(task_name, event_id, t) for t in targets])
    return {t for t, hit in zip(targets, found, strict=True) if hit is not None}


def mark_delivered(task_name: str, event_id: str, target: str, ttl: int) -> None:
    """Record that this consumer delivered this event to ``target``.

    :param task_name: the consumer's task name.
    :param event_id: the event's id.
    :param target: the mail address, push endpoint...
    :param ttl: seconds to remember it (``NOTIFICATIONS_DEDUP_TTL``).
    """
    client = _client()
    if client is not None:
        client.set(_delivered_key(task_name, event_id, target), 1, ex=ttl)


def add_dead_letter(
    task_name: str, hub_id: str, app_key: str, event_json: str, error: BaseException
) -> None:
    """Keep a task that failed for good, for an operator to inspect and replay.

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param app_key: the key of the Flask app the task ran in.
    :param event_json: the event.
    :param error: the last exception.
    """
    client = _client()
    if client is None:
        return
    letter = {
        "task": task_name,
        "hub_id": hub_id,
        "app": app_key,
        "event": event_json,
        "error": printable(f"{type(error).__name__}: {error}", 2000),
        "failed_at": time.time(),
    }
    key = dead_letters_key()
    pipe = client.pipeline(transaction=True)
    pipe.lpush(key, json.dumps(letter))
    # Bounded: the oldest go once NOTIFICATIONS_DEAD_LETTERS_MAX are kept.
    pipe.ltrim(key, 0, current_app.config["NOTIFICATIONS_DEAD_LETTERS_MAX"] - 1)
    pipe.execute()


def dead_letters() -> list[dict[str, Any]]:
    """The dead letters, newest first."""
    client = _client()
    if client is None:
        return []
    return [json.loads(raw) for raw in client.lrange(dead_letters_key(), 0, -1)]


def replay_dead_letters() -> int:
    """Enqueue every dead letter again (oldest first) and remove it.

    :returns: how many were replayed.
    """
    client = _client()
    if client is None:
        return 0
    tasks = get_state().celery.tasks
    count = 0
    key = dead_letters_key()
    while (raw := client.rpop(key)) is not None:
        letter = json.loads(raw)
        task = tasks.get(letter["task"])
        if task is None:  # unknown here: keep it for a process that knows it
            client.rpush(key, raw)
            break
        task.apply_async((letter["event"], letter["hub_id"], letter["app"]), serializer="json")
        count += 1
    return count
