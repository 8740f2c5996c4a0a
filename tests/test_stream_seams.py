"""Where a stream's sources meet: history and live events, a late hub, a Redis
that lost its data.

Each of these guarantees once rested on code that no test exercised: a stream
registered after its history was read (a gap), or the id check between replay
and live events dropped (duplicates), passed the whole suite.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from flask_notifications.event_hub import hub_id_for
from flask_notifications.pubsub.redis_pubsub import RedisPubSub

from .test_streaming import INBOX, NEWS, ev, stream, titles

STREAMS = 150
#: Seconds to wait for an event before a reader gives up.
PATIENCE = 30.0


class Publisher(threading.Thread):
    """Publishes on ``News`` a fraction of a millisecond apart (bursts of 3
    back to back, then 0.4 ms of rest) until told to stop; then publishes a
    last event titled ``end``. Every seventh event is for one user only
    (``u<seq % 10>``), the others for all."""

    def __init__(self, publish) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.publish = publish
        #: ``(history id, recipients)`` in publishing order (the ids' order).
        self.published: list[tuple[str, list[str]]] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            seq = 0
            while not self.stopping.is_set():
                recipients = [f"u{seq % 10}"] if seq % 7 == 0 else []
                self.published.append((self.publish(NEWS, ev(str(seq), recipients)), recipients))
                seq += 1
                if seq % 3 == 0:  # bursts of 3, back to back: in-process, microseconds apart
                    time.sleep(0.0004)
            self.published.append((self.publish(NEWS, ev("end")), []))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
            raise

    def expected(self, user: str, after_key, key) -> list[str]:  # type: ignore[no-untyped-def]
        """The ids a stream of ``user`` that resumed after ``after_key`` must show."""
        return [
            event_id
            for event_id, recipients in self.published
            if (not recipients or user in recipients) and key(event_id) > after_key
        ]


class Reader(threading.Thread):
    """Opens one stream of ``News`` (with ``Last-Event-ID`` when ``resume``),
    and reads it until the event titled ``end``."""

    def __init__(self, base: str, index: int, publisher: Publisher, resume: bool) -> None:
        super().__init__(daemon=True)
        self.base, self.user = base, f"u{index % 10}"
        self.publisher, self.resume = publisher, resume
        self.back = 1 + index % 25  # how many events before the newest the client resumes after
        self.start_id: str | None = None
        self.ids: list[str] = []
        self.problem = ""

    def run(self) -> None:
        headers = {"X-User": self.user}
        if self.resume:
            published = self.publisher.published
            self.start_id = published[max(0, len(published) - self.back)][0]
            headers["Last-Event-ID"] = self.start_id
        try:
            client = stream(self.base, "News", headers=headers, ready=False, timeout=PATIENCE)
            with client:
                if client.status != 200:
                    self.problem = f"status {client.status}"
                    return
                if not self.resume:
                    self.start_id = client.wait_ready(PATIENCE)["id"]
                while True:
                    event = client.next_event(PATIENCE)
                    if event is None:
                        self.problem = "the stream ended before the last event"
                        return
                    if event["event"] != "message":
                        self.problem = f"unexpected {event}"
                        return
                    self.ids.append(event["id"])
                    if json.loads(event["data"])["title"] == "end":
                        return
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.problem = repr(exc)


@pytest.fixture
def burst_base(request, backend_name, server_kind, monkeypatch):  # type: ignore[no-untyped-def]
    """A stream server whose queues and replays hold a whole burst (a loaded
    machine may accept a connection late): this test is about seams, not
    about cutting slow readers or resetting far-behind ones."""
    settings = {"STREAM_QUEUE": "50000", "REPLAY_MAX": "50000"}
    if backend_name == "memory":
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        # The server's threads are this process's: switch between them every
        # 20 us instead of 5 ms, so a race between two lines shows.
        previous = sys.getswitchinterval()
        sys.setswitchinterval(2e-5)
        request.addfinalizer(lambda: sys.setswitchinterval(previous))
        return request.getfixturevalue("memory_stream").base
    return request.getfixturevalue("stream_process")(server_kind, **settings)[0]


@pytest.mark.parametrize(
    ("backend_name", "server_kind"),
    [("redis", "serve"), ("redis", "gunicorn"), ("memory", "werkzeug")],
    indirect=["backend_name"],
)
def test_streams_opening_during_a_burst_get_every_event_once(burst_base, publish):
    """150 streams open while events are published back to back: first
    connections (from their ``ready`` id) and reconnections (from a
    ``Last-Event-ID`` a few events back) each show every event after their
    starting id that is theirs, in order, with no gap and no duplicate.

    Under gevent (``serve``, ``gunicorn``) each stream then becomes direct
    (see flask_notifications/stream/_direct.py): a third seam."""
    publisher = Publisher(publish)
    publisher.start()
    while len(publisher.published) < 30 and publisher.is_alive():
        time.sleep(0.001)
    readers = [Reader(burst_base, i, publisher, resume=i % 2 == 1) for i in range(STREAMS)]
    for reader in readers:
        reader.start()
        time.sleep(0.002)  # openings spread over the burst, not all at its start
    deadline = time.monotonic() + PATIENCE
    while any(r.start_id is None and not r.problem for r in readers):
        assert time.monotonic() < deadline, "streams did not open"
        time.sleep(0.01)
    time.sleep(0.05)  # the last streams open while events keep coming
    publisher.stopping.set()
    publisher.join(PATIENCE)
    assert publisher.error is None
    for reader in readers:
        reader.join(PATIENCE)
    key = publish.key
    failures = []
    for reader in readers:
        if reader.problem:
            failures.append(f"{reader.user} resume={reader.resume}: {reader.problem}")
            continue
        assert reader.start_id is not None
        expected = publisher.expected(reader.user, key(reader.start_id), key)
        if reader.ids != expected:
            got = set(reader.ids)
            missing = [i for i in expected if i not in got]
            duplicates = len(reader.ids) - len(got)
            failures.append(
                f"{reader.user} resume={reader.resume} from {reader.start_id}: "
                f"{len(missing)} missing (first {missing[:3]}), {duplicates} duplicates, "
                f"{len(reader.ids)} received of {len(expected)}"
            )
    assert not failures, f"{len(failures)} of {STREAMS} streams wrong:\n" + "\n".join(failures[:10])
    assert len(publisher.published) > 200, len(publisher.published)  # a burst, not a trickle


def test_a_hub_created_after_the_dispatcher_started_is_streamed(stream_server, redis_client):
    """The dispatcher subscribed to the hubs that existed when it started; a
    stream of a hub created later makes it subscribe to that one too, and what
    is published at once (before the new subscription) is not lost."""
    base = stream_server()
    backend = RedisPubSub(redis_client)
    late = hub_id_for("Late")
    with stream(base, user="alice") as first:  # the dispatcher starts, without "Late"
        backend.publish(INBOX, ev("started", ["alice"]).to_json())
        assert titles(first.events(1)) == ["started"]
        # /custom/<label> creates the hub in the server when its stream opens.
        with stream(base, user="alice", path="/custom/Late") as client:
            for i in range(5):
                backend.publish(late, ev(f"late{i}", ["alice"]).to_json())
            assert titles(client.events(5, timeout=10)) == [f"late{i}" for i in range(5)]
            with pytest.raises(TimeoutError):
                client.next_event(timeout=0.3)  # and nothing twice
            backend.publish(late, ev("live", ["alice"]).to_json())
            assert titles(client.events(1)) == ["live"]


def test_streams_get_reset_after_redis_restarts_without_its_data(stream_server):
    """Redis restarted without persistence: the history is gone, so the
    dispatcher cannot backfill what the open streams missed. Each open stream
    gets ``reset`` (reload your state) and then live events; a client that
    reconnects with an id from before the restart gets ``reset`` too."""
    import redis as redis_lib

    from flask_notifications.testing import RedisServer

    with RedisServer() as server:  # no AOF, no snapshots
        client = redis_lib.Redis.from_url(server.url)
        publisher = RedisPubSub(client)
        base = stream_server(REDIS_URL=server.url)
        with stream(base, user="alice") as alice, stream(base, "News") as anonymous:
            old_id = publisher.publish(INBOX, ev("before", ["alice"]).to_json())
            publisher.publish(NEWS, ev("news before").to_json())
            assert titles(alice.events(1)) == ["before"]
            assert titles(anonymous.events(1)) == ["news before"]

            server.stop(keep_directory=True)
            time.sleep(0.3)  # the dispatcher notices
            server.start()
            for open_stream in (alice, anonymous):
                reset = open_stream.next_event(timeout=15)
                assert reset is not None and reset["event"] == "reset"
            with stream(base, user="alice", headers={"Last-Event-ID": old_id}) as again:
                assert again.next_event()["event"] == "reset"
            publisher.publish(INBOX, ev("after", ["alice"]).to_json())
            publisher.publish(NEWS, ev("news after").to_json())
            assert titles(alice.events(1, timeout=10)) == ["after"]
            assert titles(anonymous.events(1, timeout=10)) == ["news after"]
        client.close()
