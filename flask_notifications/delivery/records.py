"""Delivery records in Redis: sent event ids, the outbox, completion records.

- ``send()`` records each event id for ``NOTIFICATIONS_DEDUP_TTL`` seconds and
  ignores an id it has already sent; in the same round trip it records the
  task it enqueues in the *outbox* (a sorted set by due time), which a
  worker's sweeper enqueues again if the broker loses it.
- A worker records ``(consumer, hub, event id)`` after each consumer's
  ``consume`` succeeds: a redelivered event skips the consumers that finished,
  and runs again those that died half way (an event task's records are
  written by :class:`~flask_notifications.delivery.event_records.EventRecords`).
- Consumers that reach the outside world record each recipient they delivered
  to (:func:`delivered`, :func:`mark_delivered`).

Dead letters are in :mod:`flask_notifications.delivery.dead_letters`. These
records need a Redis client the library can use (one server, a
Sentinel-managed master or a Redis Cluster); with another broker client they
are skipped. Every key starts with the app's ``NOTIFICATIONS_REDIS_PREFIX``.

On a Redis Cluster, an event's records share one hash slot, so its scripts and
transactions stay on one node: they live in one of :data:`BUCKETS` buckets
(``<prefix>:{o<n>}:...``, ``n`` from the event id), each with its own outbox
and dead letters; the sweeper and the dead-letter tools go through every bucket.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import redis
from flask import current_app

from .._redis import is_cluster, is_redis, replica_wait
from .._state import get_state

#: ``[hub id, consumer task name]``: one consumer of an event.
Target = Sequence[str]
#: Buckets of the records on a Redis Cluster (an event's records share a slot).
BUCKETS = 16


def _key(*parts: str) -> str:
    return get_state().key(*parts)


def _buckets() -> list[str]:
    """The hash tags of the buckets: ``[""]`` (one bucket, no tag) off a cluster."""
    if not is_cluster(get_state().redis):
        return [""]
    return [f"{{o{n}}}" for n in range(BUCKETS)]


def _bucket(event_id: str | None) -> str:
    """The hash tag of ``event_id``'s bucket (``""`` off a cluster; the first
    bucket for no event)."""
    if not is_cluster(get_state().redis):
        return ""
    return f"{{o{zlib.crc32((event_id or '').encode()) % BUCKETS}}}"


def event_key(event_id: str, *parts: str) -> str:
    """A key of ``event_id``'s records, in its bucket."""
    tag = _bucket(event_id)
    return _key(tag, *parts) if tag else _key(*parts)


def redis_client() -> Any:
    """The app's client when the records can be kept with it (a
    :class:`redis.Redis` or a :class:`redis.cluster.RedisCluster`), else ``None``."""
    client = get_state().redis
    return client if is_redis(client) else None


def pending_key(event_id: str | None = None) -> str:
    """The current app's Redis sorted set of enqueued tasks not finished yet
    (the outbox; score: due time); on a Redis Cluster, that of ``event_id``'s bucket.

    :param event_id: the event whose bucket to name (only on a cluster).
    """
    tag = _bucket(event_id)
    return _key(tag, "pending") if tag else _key("pending")


def pending_keys() -> list[str]:
    """Every outbox of the current app (one per bucket on a Redis Cluster)."""
    return [_key(tag, "pending") if tag else _key("pending") for tag in _buckets()]


def dead_letters_key(event_id: str | None = None) -> str:
    """The current app's Redis list of dead letters (JSON objects), newest first
    (see :mod:`flask_notifications.delivery.dead_letters`); on a Redis
    Cluster, that of ``event_id``'s bucket.

    :param event_id: the event whose bucket to name (only on a cluster).
    """
    tag = _bucket(event_id)
    return _key(tag, "dead_letters") if tag else _key("dead_letters")


def dead_letters_keys() -> list[str]:
    """Every dead-letter list of the current app (one per bucket on a Redis Cluster)."""
    return [_key(tag, "dead_letters") if tag else _key("dead_letters") for tag in _buckets()]


def pending_event_key(event_id: str) -> str:
    """The key of an event kept for its redelivery (for ``NOTIFICATIONS_DEDUP_TTL``).

    :param event_id: the event's id.
    """
    return event_key(event_id, "pending_event", event_id)


def done_key(task_name: str, hub_id: str, event_id: str) -> str:
    """The completion record of a consumer for an event.

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param event_id: the event's id.
    """
    return event_key(event_id, "done", hub_id, task_name, event_id)


def pending_member(task_name: str, target: str | Any, app_key: str, event_id: str) -> str:
    """The outbox member of a task: all a redelivery needs but the event,
    which is stored once per event.

    :param task_name: the task's name.
    :param target: its second argument: a hub id, or the event task's targets.
    :param app_key: the Flask app's key.
    :param event_id: the event's id.
    """
    return json.dumps([task_name, target, app_key, event_id], separators=(",", ":"))


def cached_script(client: Any, name: str, source: str) -> Any:
    """The Lua script ``source`` registered on ``client`` once, as ``name``.

    :param client: a Redis client.
    :param name: the attribute that caches it on the client.
    :param source: the script.
    """
    return _script(client, name, source)


def _script(client: Any, name: str, source: str) -> Any:
    script = client.__dict__.get(name)
    if script is None:  # registered once per client
        script = client.__dict__[name] = client.register_script(source)
    return script


# -- the request side -----------------------------------------------------------------

# Claim the event id, record its tasks in the outbox and, when given, its
# delivery log's "queued" fields, in one command (ARGV: ttl, due, event,
# the number of outbox members, the members, then the log's ttl and fields).
_CLAIM_AND_RECORD = """
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[1])
local n = tonumber(ARGV[4])
local members = {}
for i = 5, 4 + n do
  members[#members + 1] = ARGV[2]
  members[#members + 1] = ARGV[i]
end
if n > 0 then redis.call('ZADD', KEYS[2], 'NX', unpack(members)) end
local first = 6 + n
if #ARGV >= first then
  for i = first, #ARGV, 2000 do
    redis.call('HSET', KEYS[4], unpack(ARGV, i, math.min(i + 1999, #ARGV)))
  end
  redis.call('EXPIRE', KEYS[4], ARGV[5 + n])
end
return 1
"""


def claim_and_record(
    event_id: str,
    ttl: int,
    tasks: list[tuple[str, Any, str]],
    event_json: str,
    due: float,
    log: tuple[str, int, list[str]] | None = None,
) -> bool:
    """Claim ``event_id`` as sent, and record its tasks in the outbox, in one
    round trip (a script): nothing is recorded for an id already sent.

    :param event_id: the event's id.
    :param ttl: seconds to remember the id (and the event, for redelivery).
    :param tasks: ``(task name, target, app key)`` triples about to be enqueued
        (for the event task, the target is its list of ``[hub id, name]``).
    :param event_json: the event.
    :param due: when to consider the tasks lost if unfinished (epoch seconds).
    :param log: the delivery log's hash key, time to live and fields and
        values (flat), written with the claim (see
        :mod:`~flask_notifications.delivery.log`), or ``None``.
    :returns: ``False`` if the event id was already sent.
    """
    client = redis_client()
    if client is None:
        return True
    script = _script(client, "_fn_claim_and_record", _CLAIM_AND_RECORD)
    args: list[Any] = [ttl, due, event_json, len(tasks)]
    args += [pending_member(name, target, app_key, event_id) for name, target, app_key in tasks]
    keys = [sent_key(event_id), pending_key(event_id), pending_event_key(event_id)]
    if log is not None:
        log_key, log_ttl, log_fields = log
        keys.append(log_key)
        args += [log_ttl, *log_fields]
    wait = client.__dict__.get("_notifications_wait")
    if wait is None:  # how many replicas a claim waits for (none off Sentinel)
        wait = client.__dict__["_notifications_wait"] = replica_wait(current_app.config, client)
    target = wait.target()
    if not target:
        return bool(script(keys=keys, args=args))
    # The outbox record must survive a failover, so that a task the broker
    # loses with its master is enqueued again: wait for the replicas.
    pipe = client.pipeline(transaction=False)
    script(keys=keys, args=args, client=pipe)
    pipe.execute_command("WAIT", target, wait.timeout_ms)
    claimed, acknowledged = pipe.execute()
    wait.record(target, int(acknowledged))
    return bool(claimed)


def sent_key(event_id: str) -> str:
    """The record of an event id that ``send()`` sent.

    :param event_id: the event's id.
    """
    return event_key(event_id, "sent", event_id)


def release_event_id(event_id: str) -> None:
    """Forget ``event_id`` (its send failed), so the caller may send it again.

    :param event_id: the event's id.
    """
    client = redis_client()
    if client is not None:
        try:
            client.delete(sent_key(event_id))
        except redis.RedisError:
            pass  # Redis is down: the key expires anyway


# -- the worker side: one consumer ---------------------------------------------------------


def is_done(task_name: str, hub_id: str, event_id: str) -> bool:
    """Whether this consumer already consumed this event.

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param event_id: the event's id.
    """
    client = redis_client()
    return client is not None and bool(client.exists(done_key(task_name, hub_id, event_id)))


def mark_done(
    task_name: str,
    hub_id: str,
    app_key: str,
    event_id: str,
    ttl: int,
    extra: Sequence[tuple[Any, ...]] = (),
) -> None:
    """Record that this consumer consumed this event, and drop its outbox
    record (one round trip).

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param app_key: the Flask app's key.
    :param event_id: the event's id.
    :param ttl: seconds to remember it.
    :param extra: more commands of the event's to send in the same round
        trip (the delivery log's).
    """
    client = redis_client()
    if client is not None:
        pipe = client.pipeline(transaction=False)
        pipe.set(done_key(task_name, hub_id, event_id), 1, ex=ttl)
        pipe.zrem(pending_key(event_id), pending_member(task_name, hub_id, app_key, event_id))
        for command in extra:
            pipe.execute_command(*command)
        pipe.execute()


def postpone_pending(task_name: str, hub_id: str, app_key: str, event_id: str, due: float) -> None:
    """Move a pending task's deadline (it is being retried later).

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param app_key: the Flask app's key.
    :param event_id: the event's id.
    :param due: the new deadline (epoch seconds).
    """
    client = redis_client()
    if client is not None:
        member = pending_member(task_name, hub_id, app_key, event_id)
        client.zadd(pending_key(event_id), {member: due}, xx=True)


def finish_pending(task_name: str, target: Any, app_key: str, event_id: str) -> None:
    """Forget a pending task (finished, skipped, or a dead letter now).

    :param task_name: the task's name.
    :param target: its hub id, or the event task's targets.
    :param app_key: the Flask app's key.
    :param event_id: the event's id.
    """
    client = redis_client()
    if client is not None:
        client.zrem(pending_key(event_id), pending_member(task_name, target, app_key, event_id))


def pending_count() -> int:
    """How many enqueued tasks are not finished yet."""
    client = redis_client()
    return sum(int(client.zcard(key)) for key in pending_keys()) if client is not None else 0


# -- per recipient -----------------------------------------------------------------------


def _delivered_key(task_name: str, event_id: str, target: str) -> str:
    return event_key(event_id, "delivered", task_name, event_id, target)


def delivered(task_name: str, event_id: str, targets: list[str]) -> set[str]:
    """Which of ``targets`` (mail addresses, push endpoints...) this consumer
    already delivered this event to: a retried task skips them, so a failure
    half way through the recipients never sends anyone the event twice.

    :param task_name: the consumer's task name.
    :param event_id: the event's id.
    :param targets: the delivery targets.
    """
    client = redis_client()
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
    client = redis_client()
    if client is not None:
        client.set(_delivered_key(task_name, event_id, target), 1, ex=ttl)


def retry_while(
    errors: tuple[type[BaseException], ...], call: Callable[[], Any], deadline: float
) -> Any:
    """Run ``call`` until it does not raise one of ``errors`` (Redis or the
    broker unreachable), backing off from 50 ms to 1 s; past ``deadline``
    (monotonic), the last error is raised.

    :param errors: what to wait out.
    :param call: the work.
    :param deadline: when to give up.
    """
    delay = 0.05
    while True:
        try:
            return call()
        except errors:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
