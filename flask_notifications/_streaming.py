"""Who is streaming, and the streams of the current app: the identity and
authorizer hooks, the dispatcher, the publisher and the SSE views' helpers.

A part of :class:`~flask_notifications.Notifications` (its base class), kept
apart so that the extension module stays about setting up and sending.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app
from markupsafe import Markup

from ._widget import CLIENT, script_tags
from .blueprint import error as stream_error
from .stream.dispatcher import Dispatcher
from .stream.notifier import SseNotifier
from .stream.views import stream_response

if TYPE_CHECKING:
    import contextlib

    from ._state import State
    from .event_hub import EventHub
    from .pubsub.backend import Backend

logger = logging.getLogger("flask_notifications")


class StreamingMixin:
    """Identity, authorization and streaming methods of the extension."""

    _hubs: dict[str, EventHub]
    _states: Any
    _identity_loader: Callable[[], Any] | None
    _stream_authorizer: Callable[[str | None, str], bool] | None

    if TYPE_CHECKING:

        def _app(self) -> Flask: ...

        def _state(self) -> State: ...

        def _context(self) -> contextlib.AbstractContextManager[State]: ...

        def create_backend(self) -> Backend: ...

    # -- identity --------------------------------------------------------------

    def identity_loader(self, func: Callable[[], Any]) -> Callable[[], Any]:
        """Register the function that returns the current user's id (or ``None``).

        Without one, the id of Flask-Login's ``current_user`` is used when
        Flask-Login is installed and the user is authenticated. Ids are
        compared as strings with events' recipients.

        :param func: called without arguments inside the request.
        """
        self._identity_loader = func
        return func

    def stream_authorizer(
        self, func: Callable[[str | None, str], bool]
    ) -> Callable[[str | None, str], bool]:
        """Register ``func(identity, hub_id) -> bool``, asked before a stream
        opens; ``False`` answers 403.

        :param func: the authorizer.
        """
        self._stream_authorizer = func
        return func

    def current_identity(self) -> str | None:
        """The current user's id as a string, or ``None`` when anonymous."""
        identity = self._identity_loader() if self._identity_loader else _flask_login_identity()
        # An empty id is nobody: it must not count as signed in.
        return None if identity is None else (str(identity) or None)

    # -- streaming ---------------------------------------------------------------

    @property
    def dispatcher(self) -> Dispatcher:
        """This process's dispatcher for the current app, started on first use
        (and again in a forked child)."""
        app = self._app()
        state = self._states[app]
        dispatcher = state.dispatcher
        if dispatcher is None or dispatcher.pid != os.getpid():
            with state.lock:
                dispatcher = state.dispatcher
                if dispatcher is None or dispatcher.pid != os.getpid():
                    self._warn_unreadable_hubs()
                    dispatcher = state.dispatcher = Dispatcher(
                        app,
                        lambda: state.backend_class.from_app(app, state.redis),
                        lambda: tuple(self._hubs),
                    )
        return dispatcher

    @property
    def publisher(self) -> Backend:
        """A backend of the current app for publishing from this process."""
        state = self._state()
        if state.publisher is None:
            state.publisher = self.create_backend()
        return state.publisher

    def shutdown(self) -> None:
        """Stop the current app's dispatcher in this process (its streams end;
        clients reconnect elsewhere). The next stream starts a new one."""
        state = self._state()
        with state.lock:
            dispatcher, state.dispatcher = state.dispatcher, None
        if dispatcher is not None:
            dispatcher.stop()

    def flask_sse_notifier(self, hub_id: str) -> Response:
        """Return the streaming ``text/event-stream`` response of the hub
        ``hub_id`` for the current request, to mount on a route of your own.

        :param hub_id: the hub's id (:attr:`EventHub.hub_id
            <flask_notifications.event_hub.EventHub.hub_id>`).
        """
        hub = self._hubs.get(hub_id)
        if hub is None:
            return stream_error(404, f"no hub with id {hub_id!r}")
        return stream_response(hub)

    def sse_notifier_for(self, hub_id: str) -> SseNotifier:
        """Return an iterator of the SSE frames of every event published on
        ``hub_id``, through a new backend (:meth:`create_backend`) subscribed
        to it, as 0.1 did. It does not check recipients: for scripts, tests
        and relays, not for browsers (see :meth:`flask_sse_notifier`).

        :param hub_id: the hub's id.
        :returns: a :class:`~flask_notifications.stream.notifier.SseNotifier`;
            its ``backend`` is subscribed already. Close it when done.
        """
        return SseNotifier(self.create_backend(), hub_id)

    def reads_broadcasts(self, hub: EventHub, identity: str | None) -> bool:
        """Whether a stream of ``identity`` on ``hub`` carries its broadcasts
        (see :meth:`create_hub`). Called when the stream opens, after the
        identity and authorizer checks passed.

        :param hub: the hub.
        :param identity: the stream's user id, or ``None``.
        """
        if hub.public:
            return True
        if hub.readers is not None:
            return bool(hub.readers(identity))
        return self._stream_authorizer is not None

    def _warn_unreadable_hubs(self) -> None:
        """Log each private hub whose broadcasts no rule lets anybody read."""
        if self._stream_authorizer is not None:
            return
        for hub in self._hubs.values():
            if not hub.public and hub.readers is None:
                logger.warning(
                    "private hub %r has no readers rule and no stream_authorizer: "
                    "its broadcasts (events without recipients) reach no stream; "
                    "use create_hub(%r, readers=...) or @notifications.stream_authorizer",
                    hub.label,
                    hub.label,
                )


def _flask_login_identity() -> Any:
    try:
        from flask_login import current_user
    except ImportError:
        return None
    if getattr(current_app, "login_manager", None) is None:
        return None
    user = current_user._get_current_object()
    return user.get_id() if user is not None and user.is_authenticated else None


def _script_tag() -> Markup:
    """``<script>`` tag of the JS client, for templates: ``{{ notifications_script() }}``
    (once per request, also when ``notifications_inbox()`` wrote it)."""
    return script_tags(CLIENT)
