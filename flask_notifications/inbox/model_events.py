"""Events from SQLAlchemy model changes, sent only after the transaction commits.

The notifier service's post_save pattern: ``on_insert(Model, factory)``
builds an event from each new ``Model`` instance when the session flushes
(while its attributes can still be read), keeps it with the session, and
sends it after the commit. A rollback drops it. The event is also written to
an outbox table in the same transaction, so a web process that dies between
the commit and the send loses nothing: workers send what it left behind
(:mod:`flask_notifications.inbox.model_outbox`).

SQLAlchemy's listeners are installed on the ``Session`` class once per
process (on the first ``on_insert``/``on_update``, never at import), and each
flush is handled by the extension of the app whose context flushed: with
several extensions in one process, one commit sends once.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import current_app, has_app_context
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from ..event import Event
from . import model_outbox

if TYPE_CHECKING:
    from ..extension import Notifications

logger = logging.getLogger("flask_notifications")

Factory = Callable[[Any], Event | None]
_PENDING = "flask_notifications.pending_events"
_install_lock = threading.Lock()
_installed = False
#: Every ModelEvents with a hook (for flushes outside an app context).
_with_hooks: weakref.WeakSet[ModelEvents] = weakref.WeakSet()


def _install() -> None:
    """Listen to every session's flushes and commits, once per process."""
    global _installed
    with _install_lock:
        if _installed:
            return
        # Session-class listeners reach every session, Flask-SQLAlchemy's included.
        sa_event.listen(Session, "after_flush", _after_flush)
        sa_event.listen(Session, "after_commit", _after_commit)
        sa_event.listen(Session, "after_soft_rollback", _after_soft_rollback)
        _installed = True


def _current() -> ModelEvents | None:
    """The model hooks of the app whose context is active; outside an app
    context, those of the one extension with hooks, if there is just one."""
    if not has_app_context():
        candidates = list(_with_hooks)
        return candidates[0] if len(candidates) == 1 else None
    extension = current_app.extensions.get("notifications")
    return getattr(extension, "_model_events", None)


def _after_flush(session: Session, _context: Any) -> None:
    hooks = _current()
    if hooks is None or not (hooks._hooks["insert"] or hooks._hooks["update"]):
        return
    events = hooks._build("insert", list(session.new), session)
    if hooks._hooks["update"]:
        events += hooks._build("update", list(session.dirty), session)
    if events:
        engine = None
        if hooks._durable():
            # In the model change's own transaction: both commit, or neither.
            connection = session.connection()
            model_outbox.record(connection, events, hooks._scope())
            engine = connection.engine
        # Kept with the (possibly nested) transaction that flushed them, so a
        # rolled-back savepoint drops its own events and no others.
        transaction = session.get_nested_transaction() or session.get_transaction()
        session.info.setdefault(_PENDING, []).extend(
            (hooks, transaction, e, engine) for e in events
        )


def _after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    sent: dict[Any, list[str]] = {}
    for hooks, _, built, engine in pending:
        # The data is committed: a failing send must neither stop the other
        # events nor turn commit() into an error (the outbox keeps them).
        if engine is not None:
            model_outbox.committed(engine)
        try:
            hooks._extension.send(built)
        except Exception:  # noqa: BLE001
            logger.exception("model event %s was committed but not sent", built["event_id"])
            continue
        if engine is not None:
            sent.setdefault(engine, []).append(built["event_id"])
    for engine, event_ids in sent.items():
        model_outbox.forget(engine, event_ids)


def _after_soft_rollback(session: Session, previous: Any) -> None:
    pending = session.info.get(_PENDING)
    if pending:
        session.info[_PENDING] = [p for p in pending if not _within(p[1], previous)]


class ModelEvents:
    """The model hooks of one :class:`~flask_notifications.Notifications`.

    :param extension: the extension whose :meth:`send` delivers the events.
    """

    def __init__(self, extension: Notifications) -> None:
        self._extension = extension
        self._hooks: dict[str, list[tuple[type, Factory]]] = {"insert": [], "update": []}

    def register(self, kind: str, model: type, factory: Factory) -> None:
        """Send ``factory(instance)`` after a commit that inserted (``kind="insert"``)
        or updated (``"update"``) an instance of ``model``.

        :param kind: ``"insert"`` or ``"update"``.
        :param model: a mapped class (subclasses match too).
        :param factory: builds the event; returning ``None`` sends nothing.
        """
        if not isinstance(model, type):
            raise TypeError(f"on_{kind}() takes a model class, not {type(model).__name__}")
        if not callable(factory):
            raise TypeError(f"on_{kind}() takes a callable factory, not {type(factory).__name__}")
        self._hooks[kind].append((model, factory))
        _with_hooks.add(self)
        _install()

    def _durable(self) -> bool:
        """Whether events go through the outbox table (``NOTIFICATIONS_MODEL_OUTBOX``)."""
        try:
            app = self._extension._app()
        except RuntimeError:  # no single app to ask: the default
            return True
        return bool(app.config.get("NOTIFICATIONS_MODEL_OUTBOX", True))

    def _scope(self) -> str:
        """The outbox rows' scope: the app's ``NOTIFICATIONS_REDIS_PREFIX``
        (the default one when no single app can be told)."""
        try:
            return self._extension._state().prefix
        except RuntimeError:  # no single app to ask: the default
            from .._config import DEFAULTS

            return str(DEFAULTS["NOTIFICATIONS_REDIS_PREFIX"])

    def has_hooks(self) -> bool:
        """Whether any ``on_insert``/``on_update`` hook is registered."""
        return bool(self._hooks["insert"] or self._hooks["update"])

    def _build(self, kind: str, instances: Any, session: Session) -> list[Event]:
        events = []
        for instance in instances:
            if kind == "update" and not session.is_modified(instance, include_collections=False):
                continue
            for model, factory in self._hooks[kind]:
                if isinstance(instance, model):
                    built = factory(instance)
                    if built is not None:
                        if not isinstance(built, Event):
                            raise TypeError(f"{factory!r} must return an Event or None")
                        events.append(built.validate())
        return events


def _within(transaction: Any, ancestor: Any) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False
