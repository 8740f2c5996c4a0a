"""Who a user is to the consumers: the e-mail address and locale resolvers.

A part of :class:`~flask_notifications.Notifications` (its base class), kept
apart so that the extension module stays about setting up and sending.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import ConfigurationError


class ResolversMixin:
    """The ``@notifications.email_resolver`` and ``@notifications.locale_resolver``
    hooks of :class:`~flask_notifications.Notifications`."""

    _email_resolver: Callable[[str], str | None] | None = None
    _locale_resolver: Callable[[str], Any] | None = None

    # -- e-mail addresses ------------------------------------------------------

    def email_resolver(self, func: Callable[[str], str | None]) -> Callable[[str], str | None]:
        """Register the function that maps a user id (an event recipient, as a
        string) to an e-mail address, or ``None`` for a user without one. The
        e-mail consumers use it when they are given no fixed recipients.

        .. code-block:: python

            @notifications.email_resolver
            def email_of(user_id):
                user = db.session.get(User, int(user_id))
                return user.email if user else None

        :param func: called with a user id, in the worker's app context.
        :returns: ``func``, so this works as a decorator.
        """
        self._email_resolver = func
        return func

    def resolve_email(self, user_id: str) -> str | None:
        """The address of ``user_id`` through :meth:`email_resolver`.

        :param user_id: the user id.
        :raises ConfigurationError: if no resolver is registered.
        """
        if self._email_resolver is None:
            raise ConfigurationError(
                "an e-mail consumer got an event for users but no address for them: "
                "register @notifications.email_resolver (user id -> address) "
                "or give the consumer recipients=[...]"
            )
        return self._email_resolver(user_id)

    # -- languages -----------------------------------------------------------------

    def locale_resolver(self, func: Callable[[str], Any]) -> Callable[[str], Any]:
        """Register the function that maps a user id (an event recipient, as a
        string) to the user's locale (``"fr"``, ``"pt_BR"``, a
        :class:`babel.Locale`), or ``None`` for the default locale
        (``NOTIFICATIONS_DEFAULT_LOCALE``, else Flask-Babel's). The e-mail and
        Web Push consumers render each recipient's texts in it (see :doc:`/i18n`).
        A resolver that raises or answers something that is not a locale is
        logged, and the recipient gets the default locale.

        .. code-block:: python

            @notifications.locale_resolver
            def locale_of(user_id):
                user = db.session.get(User, int(user_id))
                return user.locale if user else None

        :param func: called with a user id, in the worker's app context.
        :returns: ``func``, so this works as a decorator.
        """
        self._locale_resolver = func
        return func

    def resolve_locale(self, user_id: str) -> Any:
        """What :meth:`locale_resolver` answers for ``user_id`` (unchecked), or
        ``None`` when no resolver is registered.

        :param user_id: the user id.
        """
        if self._locale_resolver is None:
            return None
        return self._locale_resolver(user_id)
