"""Throttle per recipient: at most ``limit`` deliveries per window, the rest
held and delivered as one summary when the window ends.

``hub.throttle(limit=5, per=timedelta(minutes=1))`` (see
:meth:`EventHub.throttle <flask_notifications.event_hub.EventHub.throttle>`).
The worker asks :func:`narrow` before it runs each consumer of a throttled
hub: the :class:`~flask_notifications.consumers.StoreConsumer` gets every
event (the inbox keeps them all); any other consumer gets the event narrowed
to the recipients the throttle lets through.

How a decision is made, per recipient (one Lua script per recipient, all
pipelined in one round trip, or one per shard on a Redis Cluster; each
script's two keys share the hash slot of ``(hub, recipient)``):

- the recipient's window (a Redis hash: its start and how many deliveries
  it allowed) starts with the first event after the previous one ended and
  lasts ``per``;
- while fewer than ``limit`` deliveries were allowed in it, the event is
  delivered; beyond, it is *held*;
- the decision is recorded under ``(hub, recipient, event id)`` for
  ``NOTIFICATIONS_DEDUP_TTL`` and returned as it is to every later ask: a
  retried or redelivered event task, and each consumer of the event (those
  that run as tasks of their own ask again), get the same answer, and an
  event never counts twice.

A held event is written to the inbox database (table
``flask_notification_throttled``, unique per hub, recipient and event) and
a durable timer (:mod:`~flask_notifications.workflows.timers`, kind
``throttle``, one per hub, recipient and window) is added for the end of
its window, both before the consumers run. An event whose hold is in the
database counts as held even if Redis lost its decision (a restart without
persistence). When the timer is due, :func:`_summarise` sends one summary
event (:func:`summary_event`) to the hub's consumers but the
``StoreConsumer``, then deletes the held rows. The summary's id derives from
the held events' ids, and ``send()``'s deduplication makes a timer run twice
(a worker killed after sending) send it once. The summary is not throttled.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from .._redis import is_cluster
from .._state import get_state
from ..delivery import log as delivery_log
from ..delivery import records
from ..errors import InvalidThrottleError
from ..event import Event
from ..inbox.database import inbox_engine
from ..inbox.models import throttled as table
from . import timers

if TYPE_CHECKING:
    from ..consumers.consumer import Consumer
    from ..event_hub import EventHub
    from ..extension import Notifications

__all__ = ["KIND", "SUMMARY_TYPE", "Throttle", "is_summary", "narrow", "summary_event"]

logger = logging.getLogger("flask_notifications")

#: The kind of the window-end timers.
KIND = "throttle"
#: The ``event_type`` of a summary.
SUMMARY_TYPE = "summary"
#: The longest title a summary lists (characters).
_TITLE_MAX = 200
_CHUNK = 1000  # recipients per IN (...)

# KEYS[1]: the recipient's window (hash: s = start, n = deliveries allowed);
# KEYS[2]: the decision for this event. ARGV: now, per, limit, decision TTL.
# Returns "d" (deliver) or "h:<window start>" (held), the recorded one if any.
_DECIDE = """
local recorded = redis.call('GET', KEYS[2])
if recorded then return recorded end
local per = tonumber(ARGV[2])
local start = redis.call('HGET', KEYS[1], 's')
local count = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if (not start) or tonumber(ARGV[1]) >= tonumber(start) + per then
  start = ARGV[1]
  count = 0
end
local decision
if count < tonumber(ARGV[3]) then
  count = count + 1
  decision = 'd'
else
  decision = 'h:' .. start
end
redis.call('HSET', KEYS[1], 's', start, 'n', count)
redis.call('EXPIRE', KEYS[1], math.ceil(per) + 60)
redis.call('SET', KEYS[2], decision, 'EX', ARGV[4])
return decision
"""


@dataclass(frozen=True)
class Throttle:
    """A hub's throttle: at most :attr:`limit` deliveries per :attr:`per`
    seconds to each recipient.

    :param limit: deliveries per window, at least 1.
    :param per: the window, in seconds (at least 1).
    """

    limit: int
    per: float

    @classmethod
    def check(cls, limit: object, per: object) -> Throttle:
        """Validate the arguments of :meth:`EventHub.throttle
        <flask_notifications.event_hub.EventHub.throttle>`.

        :param limit: an integer >= 1.
        :param per: a :class:`~datetime.timedelta` of at least one second.
        :raises InvalidThrottleError: naming what is wrong.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidThrottleError(f"throttle limit must be an integer >= 1, not {limit!r}")
        if not isinstance(per, timedelta):
            raise InvalidThrottleError(
                f"throttle per must be a timedelta, not {type(per).__name__}"
            )
        if per < timedelta(seconds=1):
            raise InvalidThrottleError(f"throttle per must be at least 1 second, not {per}")
        return cls(limit, per.total_seconds())


def is_summary(event: Event) -> bool:
    """Whether ``event`` is a throttle's summary (never throttled itself).

    :param event: an event.
    """
    return event["event_type"] == SUMMARY_TYPE and isinstance(event.get("throttle"), dict)


def narrow(hub: EventHub, consumer: Consumer, event: Event) -> Event | None:
    """The event as ``consumer`` of ``hub`` gets it under the hub's throttle:
    as it is (no throttle, the ``StoreConsumer``, a broadcast, a summary, or
    nobody held), narrowed to the recipients let through, or ``None`` when
    every recipient's copy is held. Held recipients are recorded in the
    delivery log as ``suppressed`` (``throttled``) on the consumer's channel.

    :param hub: the hub the consumer runs for.
    :param consumer: the consumer about to run.
    :param event: the event.
    """
    from ..consumers.store_consumer import StoreConsumer

    settings: Throttle | None = getattr(hub, "_throttle", None)
    if (
        settings is None
        or isinstance(consumer, StoreConsumer)
        or not event["recipients"]
        or is_summary(event)
    ):
        return event
    users = list(dict.fromkeys(str(r) for r in event["recipients"]))
    held = _decide(hub.hub_id, event, users, settings)
    if not held:
        return event
    channel = consumer.channel
    if channel is not None and consumer.wants(event):
        delivery_log.record_many(
            event["event_id"],
            [(u, channel, "suppressed", "throttled: held for the summary") for u in held],
        )
    allowed = [u for u in users if u not in held]
    if not allowed:
        return None
    return Event.from_dict(dict(event, recipients=allowed))


def _decide(hub_id: str, event: Event, users: list[str], settings: Throttle) -> dict[str, float]:
    """The recipients held, with the end of their window; their holds are in
    the database and their timers added when this returns."""
    event_id = event["event_id"]
    held = _held_rows(hub_id, event_id, users)
    ask = [u for u in users if u not in held]
    client = records.redis_client()
    if ask and client is not None:
        state = get_state()
        ttl = int(current_app.config["NOTIFICATIONS_DEDUP_TTL"])
        args = [repr(time.time()), settings.per, settings.limit, ttl]
        calls = []
        for user in ask:
            tag = "{t:" + hub_id + ":" + user + "}"  # both keys in one slot
            calls.append([state.key(tag, "window"), state.key(tag, "decision", event_id)])
        for user, answer in zip(ask, _run_decisions(client, calls, args), strict=True):
            text = answer.decode() if isinstance(answer, bytes) else str(answer)
            if text.startswith("h:"):
                held[user] = float(text[2:]) + settings.per
    if held:
        _hold(hub_id, event, held)
    return held


def _run_decisions(client: Any, calls: list[list[str]], args: list[Any]) -> list[Any]:
    """Run the decision script once per key pair of ``calls``, pipelined:
    in one round trip on one server; on a Redis Cluster, whose pipelines
    take no scripts, in one round trip per shard, on that shard's client."""
    if not is_cluster(client):
        script = records.cached_script(client, "_fn_throttle_decide", _DECIDE)
        pipe = client.pipeline(transaction=False)
        for keys in calls:
            script(keys=keys, args=args, client=pipe)
        return list(pipe.execute())
    answers: list[Any] = [None] * len(calls)
    by_node: dict[str, list[int]] = {}
    nodes: dict[str, Any] = {}
    for index, keys in enumerate(calls):
        node = client.get_node_from_key(keys[0])
        nodes[node.name] = node
        by_node.setdefault(node.name, []).append(index)
    for name, indexes in by_node.items():
        shard = client.get_redis_connection(nodes[name])
        script = records.cached_script(shard, "_fn_throttle_decide", _DECIDE)
        pipe = shard.pipeline(transaction=False)
        for index in indexes:
            script(keys=calls[index], args=args, client=pipe)
        for index, answer in zip(indexes, pipe.execute(), strict=True):
            answers[index] = answer
    return answers


def _held_rows(hub_id: str, event_id: str, users: list[str]) -> dict[str, float]:
    """The recipients whose copy of the event is held in the database."""
    found: dict[str, float] = {}
    with _engine().connect() as conn:
        for i in range(0, len(users), _CHUNK):
            query = select(table.c.recipient, table.c.window_end).where(
                table.c.scope == get_state().prefix,
                table.c.hub_id == hub_id,
                table.c.event_id == event_id,
                table.c.recipient.in_(users[i : i + _CHUNK]),
            )
            found.update({r: end for r, end in conn.execute(query)})
    return found


def _hold(hub_id: str, event: Event, held: dict[str, float]) -> None:
    """Write the holds (once each) and the timers of their windows (once each)."""
    engine = _engine()
    make = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(engine.dialect.name)
    now = time.time()
    scope = get_state().prefix
    rows = [
        {
            "scope": scope,
            "hub_id": hub_id,
            "recipient": user,
            "event_id": event["event_id"],
            "event_type": event["event_type"],
            "title": event["title"][:_TITLE_MAX],
            "window_end": end,
            "held_at": now,
        }
        for user, end in held.items()
    ]
    with engine.begin() as conn:
        if make is not None:
            conn.execute(make(table).on_conflict_do_nothing(), rows)
        else:  # another database: skip the rows already there
            there = _held_rows(hub_id, event["event_id"], list(held))
            fresh = [r for r in rows if r["recipient"] not in there]
            if fresh:
                conn.execute(table.insert(), fresh)
    for user, end in held.items():
        payload = {"hub_id": hub_id, "user": user, "end": end}
        timers.add(KIND, _timer_key(hub_id, user, end), end, payload)


def _engine() -> Any:
    """The inbox engine, for the held events (a clear ``ConfigurationError``
    if their table predates its ``scope`` column)."""
    return inbox_engine(table=table)


def _timer_key(hub_id: str, user: str, end: float) -> str:
    return timers.make_key(KIND, hub_id, repr(end), user)


def summary_event(hub: EventHub, user: str, rows: list[Any], listed: int) -> Event:
    """The summary of the events held for ``user`` on ``hub``.

    ``event_type`` ``"summary"``; title ``"N more notifications"`` (``"1 more
    notification"``); body: the first three titles; ``recipients``: the
    user; ``sender``: empty; custom fields ``count`` (how many were held),
    ``events`` (``{event_id, event_type, title}`` of the first ``listed``,
    oldest first) and ``throttle`` (``{hub, window_end}``). Its id is derived
    from the held events' ids, so the same summary has the same id.

    :param hub: the hub.
    :param user: the recipient.
    :param rows: the held rows, oldest first.
    :param listed: at most this many events listed.
    """
    ids = [row.event_id for row in rows]
    digest = hashlib.sha256("\x1f".join([hub.hub_id, user, *ids]).encode()).hexdigest()[:40]
    count = len(rows)
    titles = [row.title for row in rows]
    body = "; ".join(titles[:3]) + ("; ..." if count > 3 else "")
    return Event(
        f"summary-{digest}",
        SUMMARY_TYPE,
        f"{count} more notification{'' if count == 1 else 's'}",
        body,
        recipients=[user],
        count=count,
        events=[
            {"event_id": r.event_id, "event_type": r.event_type, "title": r.title}
            for r in rows[:listed]
        ],
        throttle={"hub": hub.label, "window_end": max(r.window_end for r in rows)},
    )


@timers.handler(KIND)
def _summarise(extension: Notifications, payload: dict[str, Any]) -> None:
    """A window ended: send the summary of the events held for its recipient
    (idempotent: the summary's id is claimed once), then forget them."""
    from ..consumers.store_consumer import StoreConsumer
    from ..delivery.request import enqueue_targets

    hub_id, user, end = payload["hub_id"], payload["user"], float(payload["end"])
    engine = _engine()
    with engine.connect() as conn:
        rows = conn.execute(
            select(table)
            .where(
                table.c.scope == get_state().prefix,
                table.c.hub_id == hub_id,
                table.c.recipient == user,
                table.c.window_end <= end,
            )
            .order_by(table.c.held_at, table.c.id)
        ).all()
    if not rows:
        return
    hub = extension.get_hub_by_id(hub_id)
    if hub is None:
        logger.warning("no hub %s in this process: %d held event(s) kept", hub_id, len(rows))
        raise LookupError(f"no hub {hub_id} in this process for a throttle summary")
    targets = [
        [hub_id, name] for name in hub._names if not isinstance(hub._consumers[name], StoreConsumer)
    ]
    if targets:
        listed = int(current_app.config["NOTIFICATIONS_THROTTLE_SUMMARY_EVENTS"])
        summary = summary_event(hub, user, rows, listed)
        if enqueue_targets(get_state(), summary, targets):
            logger.info("summary of %d held event(s) sent to %s on hub %s", len(rows), user, hub_id)
    with engine.begin() as conn:
        conn.execute(delete(table).where(table.c.id.in_([r.id for r in rows])))
