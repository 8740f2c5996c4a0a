"""Events from SQLAlchemy model changes, sent only after the transaction commits.

The notifier service's post_save pattern: ``on_insert(Model, factory)``
builds an event from each new ``Model`` instance when the session flushes
(while its attributes can still be read), keeps it with the session, and
sends it after the commit. A rollback drops it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import has_app_context
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from ..event import Event

if TYPE_CHECKING:
    from ..extension import Notifications

logger = logging.getLogger("flask_notifications")

Factory = Callable[[Any], Event | None]
_PENDING = "flask_notifications.pending_events"


class ModelEvents:
    """The model hooks of one :class:`~flask_notifications.Notifications`.

    :param extension: the extension whose :meth:`send` delivers the events.
    """

    def __init__(self, extension: Notifications) -> None:
        self._extension = extension
        self._hooks: dict[str, list[tuple[type, Factory]]] = {"insert": [], "update": []}
        self._installed = False

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
        if not self._installed:
            # Session-class listeners reach every session, Flask-SQLAlchemy's included.
            sa_event.listen(Session, "after_flush", self._after_flush)
            sa_event.listen(Session, "after_commit", self._after_commit)
            sa_event.listen(Session, "after_soft_rollback", self._after_soft_rollback)
            self._installed = True

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

    def _after_flush(self, session: Session, _context: Any) -> None:
        events = self._build("insert", list(session.new), session)
        if self._hooks["update"]:
            events += self._build("update", list(session.dirty), session)
        if events:
            # Kept with the (possibly nested) transaction that flushed them, so a
            # rolled-back savepoint drops its own events and no others.
            transaction = session.get_nested_transaction() or session.get_transaction()
            session.info.setdefault(_PENDING, []).extend((self, transaction, e) for e in events)

    def _after_commit(self, session: Session) -> None:
        pending = session.info.get(_PENDING)
        if not pending:
            return
        mine = [e for owner, _, e in pending if owner is self]
        session.info[_PENDING] = [p for p in pending if p[0] is not self]
        if not has_app_context():
            logger.error("%d committed model event(s) not sent: no app context", len(mine))
            return
        for built in mine:
            # The data is committed: a failing send must neither stop the other
            # events nor turn commit() into an error.
            try:
                self._extension.send(built)
            except Exception:  # noqa: BLE001
                logger.exception("model event %s was committed but not sent", built["event_id"])

    def _after_soft_rollback(self, session: Session, previous: Any) -> None:
        pending = session.info.get(_PENDING)
        if not pending:
            return
        session.info[_PENDING] = [p for p in pending if not _within(p[1], previous)]


def _within(transaction: Any, ancestor: Any) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False
