"""Model events survive the web process: the outbox table, written in the
model's transaction, and the workers' sweep."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import create_engine

from flask_notifications.inbox import model_outbox

from .conftest import ROOT, wait_for, worker_process


@pytest.fixture
def outbox_env(redis_url, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("OUTBOX_DB", str(tmp_path / "app.sqlite"))
    monkeypatch.setenv("OUTBOX_LOG", str(tmp_path / "events.log"))
    return tmp_path


def logged(path) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_an_event_committed_then_killed_is_sent_once_by_a_worker(
    outbox_env, redis_url, monkeypatch
):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    died = subprocess.run([sys.executable, str(ROOT / "tests" / "model_outbox_app.py")], env=env)
    assert died.returncode == -signal.SIGKILL
    engine = create_engine(f"sqlite:///{outbox_env / 'app.sqlite'}")
    (row,) = model_outbox.pending(engine)  # committed with the post, never sent
    assert row["event_id"] == "post-1"
    assert logged(outbox_env / "events.log") == []

    monkeypatch.setenv("OUTBOX_AFTER", "0.2")
    with worker_process("tests.model_outbox_app:celery", redis_url):
        wait_for(lambda: logged(outbox_env / "events.log"), timeout=30)
        wait_for(lambda: not model_outbox.pending(engine), timeout=10)
    assert [e["event_id"] for e in logged(outbox_env / "events.log")] == ["post-1"]
    engine.dispose()


def test_a_sent_event_leaves_no_row_and_a_rollback_writes_none(outbox_env, worker):
    import tests.model_outbox_app as outbox_app

    outbox_app = importlib.reload(outbox_app)  # the settings of this test's environment
    from sqlalchemy.orm import Session

    with outbox_app.app.app_context():
        with Session(outbox_app.engine) as session:
            session.add(outbox_app.Post(title="kept"))
            session.commit()
        with Session(outbox_app.engine) as session:
            session.add(outbox_app.Post(title="dropped"))
            session.flush()
            assert len(model_outbox.pending(outbox_app.engine)) == 0  # other connection: not yet
            session.rollback()
    assert model_outbox.pending(outbox_app.engine) == []
    with worker(outbox_app.app):
        wait_for(lambda: logged(outbox_env / "events.log"))
    assert [e["title"] for e in logged(outbox_env / "events.log")] == ["kept"]
    outbox_app.engine.dispose()
