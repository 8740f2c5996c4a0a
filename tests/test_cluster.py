"""Redis Cluster (3 masters, Redis 7): hash-tagged keys and channels, sharded
pub/sub with one subscription per shard, streams on hubs of every shard."""

from __future__ import annotations

import json
import threading
import time

import pytest
from redis.cluster import RedisCluster

from flask_notifications import Event, Notifications
from flask_notifications._redis import blocking_client
from flask_notifications.errors import ConfigurationError
from flask_notifications.event_hub import hub_id_for
from flask_notifications.pubsub import RedisPubSub

from .conftest import wait_for
from .sse_client import SSEClient

pytestmark = pytest.mark.subprocess
PREFIX = "flask_notifications:"
CONFIG = {"NOTIFICATIONS_REDIS_MAX_CONNECTIONS": 10, "NOTIFICATIONS_REDIS_POOL_TIMEOUT": 5}


def shard_of(client: RedisCluster, hub_id: str) -> str:
    return client.get_node_from_key(RedisPubSub(client, PREFIX).channel_name(hub_id)).name


def labels_per_shard(client: RedisCluster, per_shard: int) -> dict[str, list[str]]:
    """Hub labels whose hubs land ``per_shard`` on each shard."""
    found: dict[str, list[str]] = {n.name: [] for n in client.get_primaries()}
    number = 0
    while any(len(labels) < per_shard for labels in found.values()):
        label = f"Hub{number}"
        number += 1
        labels = found[shard_of(client, hub_id_for(label))]
        if len(labels) < per_shard:
            labels.append(label)
    return found


def subscribed_connections(cluster) -> dict[int, int]:
    """Per node port: how many client connections hold shard subscriptions."""
    counts = {}
    for node in cluster.nodes:
        with node.client(decode_responses=True) as client:
            counts[node.port] = sum(1 for c in client.client_list() if int(c.get("ssub", 0)))
    return counts


def test_a_cluster_url_makes_a_cluster_client_and_needs_a_separate_broker(
    make_app, cluster_url, redis_url
):
    app = make_app(NOTIFICATIONS_REDIS_URL=cluster_url)
    with pytest.raises(ConfigurationError, match="CELERY_BROKER_URL"):
        Notifications(app)  # kombu has no Redis Cluster transport
    app = make_app(NOTIFICATIONS_REDIS_URL=cluster_url, CELERY_BROKER_URL=redis_url)
    notifications = Notifications(app)
    assert isinstance(notifications.redis, RedisCluster)
    assert notifications.celery.conf.broker_url == redis_url


def test_pubsub_holds_one_connection_per_shard_and_history_on_each(cluster_url, redis_cluster):
    client = blocking_client(cluster_url, CONFIG)
    shards = labels_per_shard(client, 3)
    hubs = [hub_id_for(label) for labels in shards.values() for label in labels]
    listener = RedisPubSub(client, PREFIX)
    listener.subscribe(*hubs)
    received: list[dict] = []
    reader = threading.Thread(target=lambda: received.extend(listener.listen()), daemon=True)
    reader.start()
    try:
        # 9 hubs on 3 shards: 3 connections, one per shard.
        one_each = {n.port: 1 for n in redis_cluster.nodes}
        wait_for(lambda: subscribed_connections(redis_cluster) == one_each)
        publisher = RedisPubSub(client, PREFIX)
        ids = {h: [publisher.publish(h, json.dumps({"n": i})) for i in range(3)] for h in hubs}
        publisher.publish_transient(hubs[0], ['{"unread_counts": {"a": 1}}'])
        wait_for(lambda: len(received) == 9 * 3 + 1)
        for hub in hubs:
            mine = [m for m in received if m["channel"] == hub and m["id"] is not None]
            assert [m["id"] for m in mine] == ids[hub]  # in order, with their history ids
            history = publisher.history(hub, ids[hub][0])
            assert [i for i, _ in history.entries] == ids[hub][1:] and not history.reset
            assert publisher.last_id(hub) == ids[hub][-1]
        assert publisher.history(hubs[0], "99999999999999-0").reset  # newer than anything
    finally:
        listener.close()
        reader.join(5)
        client.close()


def test_streams_on_hubs_of_every_shard_get_their_events(
    stream_server, cluster_url, redis_url, redis_cluster
):
    base = stream_server(REDIS_URL=cluster_url, BROKER_URL=redis_url)
    client = blocking_client(cluster_url, CONFIG)
    labels = [label for group in labels_per_shard(client, 2).values() for label in group]
    users = [f"u{i}" for i in range(5)]
    streams = {
        (label, user): SSEClient(f"{base}/custom/{label}", {"X-User": user})
        for label in labels
        for user in users
    }
    try:
        for stream in streams.values():
            assert stream.status == 200
            stream.wait_ready()
        # The dispatcher resubscribed as hubs appeared: one connection per shard remains.
        wait_for(lambda: set(subscribed_connections(redis_cluster).values()) == {1})
        publisher = RedisPubSub(client, PREFIX)
        for label in labels:
            hub_id = hub_id_for(label)
            for user in users:
                event = Event(None, "message", f"{label}/{user}", "", recipients=[user])
                publisher.publish(hub_id, event.to_json())
            publisher.publish(hub_id, Event(None, "message", f"{label}/all", "").to_json())
        for (label, user), stream in streams.items():
            got = [json.loads(e["data"])["title"] for e in stream.events(2, timeout=10)]
            assert got == [f"{label}/{user}", f"{label}/all"]
            with pytest.raises(TimeoutError):
                stream.next_event(timeout=0.05)
    finally:
        for stream in streams.values():
            stream.close()
        client.close()


def test_delivery_records_work_on_a_cluster(make_app, cluster_url, redis_url, redis_client, worker):
    """Dedup, the outbox (in buckets spread over the shards), redelivery of
    what the broker lost, completion records and dead letters, on RedisCluster."""
    from flask_notifications import reliability
    from flask_notifications.consumers import Consumer
    from flask_notifications.filters import WithEventType

    class Broken(Consumer):
        def consume(self, event, *args, **kwargs):
            raise KeyError("a bug")

    app = make_app(
        NOTIFICATIONS_REDIS_URL=cluster_url,
        CELERY_BROKER_URL=redis_url,
        NOTIFICATIONS_REDELIVER_AFTER=0.5,
    )
    notifications = Notifications(app)
    done: list[tuple[str, str]] = []
    notifications.create_hub("Recorded").filter_by(WithEventType("good"))
    for name in ("a", "b"):
        notifications.create_hub("Recorded").register_consumer(
            lambda e, name=name: done.append((name, e["event_id"])),
            celery_task_name=f"tests.cluster.{name}",
        )
    broken_hub = notifications.create_hub("Broken")
    broken_hub.register_consumer(Broken(), celery_task_name="tests.cluster.broken")
    broken_hub.filter_by(WithEventType("bad"))
    with app.app_context():
        events = [Event(None, "good", f"n{i}", "") for i in range(20)]
        for event in events:
            notifications.send(event)
        notifications.send(events[0])  # the same event id again: ignored
        assert redis_client.llen("celery") == 20
        assert reliability.pending_count() == 20
        client = notifications.redis
        nodes = {
            client.get_node_from_key(reliability.pending_key(e["event_id"])).name for e in events
        }
        assert len(nodes) > 1  # the outbox buckets are spread over the shards
        redis_client.delete("celery")  # the broker loses every message
        time.sleep(0.6)
        assert reliability.redeliver_pending(0.5) == 20
        bad = notifications.send(Event(None, "bad", "x", ""))
        with worker(app):
            wait_for(lambda: len(done) >= 40, 15)
            wait_for(lambda: reliability.dead_letters(), 15)
            wait_for(lambda: reliability.pending_count() == 0, 15)
        assert sorted(done) == sorted((n, e["event_id"]) for n in "ab" for e in events)
        (letter,) = reliability.dead_letters()
        assert letter["task"] == "tests.cluster.broken" and bad["event_id"] in letter["event"]
        assert reliability.replay_dead_letters() == 1 and reliability.dead_letters() == []
