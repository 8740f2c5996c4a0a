"""Task registration: done by ``init_app`` and ``register_consumer``, never at import.

Tasks are registered with :func:`celery.shared_task`, so they reach every
Celery app of the process, including one created after the consumer was
registered. Importing any module of the package registers nothing and
connects no signal.
"""

from __future__ import annotations

import threading

from celery import shared_task
from celery.signals import task_revoked, worker_ready, worker_shutdown

from .sweeper import start_sweeper, stop_sweeper
from .tasks import EVENT_TASK, FAN_OUT_TASK, ConsumerTask
from .worker import forget_expired, run_consumer, run_event

_registered: set[str] = set()
_registered_lock = threading.Lock()


def ensure_task(name: str) -> None:
    """Register the task of the consumer ``name`` on every Celery app (once per
    process): it runs that consumer alone (its own task, its retries, a replayed
    dead letter).

    :param name: the consumer's task name, e.g. ``"app.write_to_file"``.
    """
    with _registered_lock:
        if name in _registered:
            return
        _registered.add(name)
    shared_task(name=name, base=ConsumerTask, bind=True)(run_consumer)


def install() -> None:
    """Register the event task, the workers' sweeper and the handling of
    expired tasks (once per process). Called by ``init_app``."""
    with _registered_lock:
        if EVENT_TASK in _registered:
            return
        _registered.update((EVENT_TASK, FAN_OUT_TASK))
    shared_task(name=EVENT_TASK, base=ConsumerTask, bind=True)(run_event)
    shared_task(name=FAN_OUT_TASK, base=ConsumerTask, bind=True)(run_event)
    uid = "flask_notifications.sweeper"
    worker_ready.connect(start_sweeper, weak=False, dispatch_uid=uid)
    worker_shutdown.connect(stop_sweeper, weak=False, dispatch_uid=uid)
    task_revoked.connect(forget_expired, weak=False, dispatch_uid="flask_notifications.expired")
    from ..consumers._digest import install_digest_task
    from ..workflows.timer_replay import run_timer
    from ..workflows.timers import TIMER_TASK

    install_digest_task()
    with _registered_lock:
        _registered.add(TIMER_TASK)
    shared_task(name=TIMER_TASK, base=ConsumerTask, bind=True)(run_timer)
