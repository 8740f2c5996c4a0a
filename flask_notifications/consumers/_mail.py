"""E-mail building blocks: the :class:`Email` a consumer builds, the Jinja
templates it renders, and the mapping of SMTP errors to the library's two."""

from __future__ import annotations

import hashlib
import smtplib
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from flask import Flask, current_app
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, meta, nodes

from .. import i18n
from .._urls import safe_link
from ..errors import MailRejected, MailServerUnavailable

_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_envs: WeakKeyDictionary[Flask, Environment] = WeakKeyDictionary()
# Per environment: template name -> whether its output names no recipient.
_recipient_free: WeakKeyDictionary[Environment, dict[str, tuple[bool, Any]]] = WeakKeyDictionary()
#: The context variables that name one recipient in the e-mail templates.
RECIPIENT_VARIABLES = frozenset(("user", "address"))


@dataclass
class Email:
    """One e-mail, ready for a transport.

    :param to: the recipient address.
    :param subject: the subject.
    :param text: the plain text body.
    :param html: the HTML alternative.
    :param message_id: the ``Message-ID`` (stable: a retried message keeps it).
    :param date: the ``Date``, in epoch seconds.
    :param headers: further headers (threading...).
    :param key: what marks it as delivered, so a retry skips it.
    """

    to: str
    subject: str
    text: str
    html: str
    message_id: str
    date: float
    headers: dict[str, str] = field(default_factory=dict)
    key: str = ""


def jinja_env(app: Flask) -> Environment:
    """The app's Jinja environment, falling back to the package's templates:
    an app overrides ``flask_notifications/mail/notification.html`` (and the
    others) by putting a file of that name in its own templates folder."""
    env = _envs.get(app)
    if env is None:
        loader = ChoiceLoader([app.jinja_env.loader, FileSystemLoader(str(_TEMPLATES))])
        env = _envs[app] = app.jinja_env.overlay(loader=loader)
    return env


def render(template: str, **context: Any) -> str:
    """Render ``template`` in the current app, with its context processors,
    ``safe_url`` (the rule for event links), and ``_`` / ``gettext`` /
    ``ngettext`` translating in the current locale (the app's Flask-Babel
    catalog, then the package's; see :mod:`flask_notifications.i18n`).

    :param template: e.g. ``"flask_notifications/mail/notification.html"``.
    :param context: the template's variables.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    ctx: dict[str, Any] = {}
    app.update_template_context(ctx)
    ctx["safe_url"] = safe_link  # event links go into href only through it
    # Plain functions returning str: with autoescaping, their output (and so
    # any parameter in it) is escaped as a whole.
    ctx["_"] = ctx["gettext"] = i18n.gettext
    ctx["ngettext"] = i18n.ngettext
    ctx.update(context)
    return jinja_env(app).get_template(template).render(ctx)


def recipient_free(template: str) -> bool:
    """Whether ``template`` renders the same for every recipient: it uses
    neither ``user`` nor ``address`` and includes, imports or extends no
    other template (which could). Then an e-mail consumer renders it once per
    locale instead of once per recipient. Found with Jinja's own parser
    (:func:`jinja2.meta.find_undeclared_variables`), once per template (and
    again after the file changed, when the app reloads its templates).

    :param template: a template name.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    env = jinja_env(app)
    known = _recipient_free.setdefault(env, {})
    cached = known.get(template)
    if cached is not None and not (env.auto_reload and cached[1] and not cached[1]()):
        return cached[0]
    assert env.loader is not None
    source, _filename, uptodate = env.loader.get_source(env, template)
    tree = env.parse(source)
    others = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
    composed = any(True for _ in tree.find_all(others))
    used = meta.find_undeclared_variables(tree)
    free = not composed and not (used & RECIPIENT_VARIABLES)
    known[template] = (free, uptodate)
    return free


def digest_of(text: str) -> str:
    """A short stable hash of ``text`` (message ids, delivery keys).

    :param text: any text.
    """
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def address_ok(address: Any) -> bool:
    """Whether ``address`` is one e-mail address, without line breaks.

    :param address: the value to check.
    """
    if not isinstance(address, str) or "\n" in address or "\r" in address:
        return False
    return "@" in parseaddr(address)[1]


def temporary(exc: smtplib.SMTPException) -> bool:
    """Whether the server's answer is a 4xx (try again later).

    :param exc: the SMTP error.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    code = getattr(exc, "smtp_code", 0)
    return 400 <= code < 500


def smtp_reason(exc: smtplib.SMTPException) -> str:
    """The server's code and text of ``exc``, for error messages.

    :param exc: the SMTP error.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"{code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
            for code, msg in exc.recipients.values()
        )
    error = getattr(exc, "smtp_error", b"")
    text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
    return f"{getattr(exc, 'smtp_code', '?')} {text}"


class SMTPErrors:
    """Turns smtplib's and the socket's errors into the two library errors:
    :class:`MailServerUnavailable` (retried) and :class:`MailRejected`."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, MailRejected | MailServerUnavailable):
            return False
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            raise MailRejected(f"SMTP authentication failed: {smtp_reason(exc)}") from exc
        if isinstance(exc, smtplib.SMTPResponseException | smtplib.SMTPRecipientsRefused):
            if temporary(exc):
                raise MailServerUnavailable(f"SMTP server busy: {smtp_reason(exc)}") from exc
            raise MailRejected(f"the SMTP server refused the message: {smtp_reason(exc)}") from exc
        if isinstance(exc, smtplib.SMTPServerDisconnected | OSError):
            raise MailServerUnavailable(f"SMTP server unreachable: {exc}") from exc
        if isinstance(exc, smtplib.SMTPException):
            raise MailRejected(f"SMTP error: {exc}") from exc
        return False
