"""``flask notifications ...``: commands for operators."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from ._state import get_state
from ._text import printable
from .delivery import dead_letters
from .delivery import log as delivery_log
from .errors import ConfigurationError, InvalidEventError, NotificationsUnavailable
from .event import Event

cli = AppGroup("notifications", help="Flask-Notifications: hubs, events and dead letters.")


@cli.command("hubs")
def hubs() -> None:
    """List the hubs with their filters and consumers."""
    for hub in get_state().extension.hubs:
        visibility = "public" if hub.public else "private"
        click.echo(f"{hub.label}  ({hub.hub_id}, {visibility})")
        click.echo(f"  filter: {hub.filter!r}")
        escalations = hub.escalations
        for name in hub.consumers:
            after = escalations.get(name)
            click.echo(f"  consumer: {name}" + (f"  (if unread after {after})" if after else ""))


@cli.command("dead-letters")
def list_dead_letters() -> None:
    """List the consumer tasks that failed for good, newest first."""
    letters = dead_letters.dead_letters()
    for letter in letters:
        try:
            event_id = json.loads(letter["event"]).get("event_id", "?")
        except (ValueError, TypeError, AttributeError):
            event_id = "?"
        # Dead letters hold text from outside (SMTP replies, push services).
        fields = (letter.get("task"), letter.get("hub_id"), event_id, letter.get("error"))
        task, hub_id, event_id, error = (printable(f, 300) for f in fields)
        click.echo(f"{task}  hub={hub_id}  event={event_id}  {error}")
    click.echo(f"{len(letters)} dead letter(s)")


@cli.command("status")
@click.argument("event_id")
def status(event_id: str) -> None:
    """Show the delivery log of EVENT_ID: each recipient's status per channel."""
    import datetime

    found = delivery_log.deliveries(event_id)
    if not found:
        raise click.ClickException(
            f"nothing in the delivery log for event {printable(event_id, 100)} "
            "(unknown, expired, or NOTIFICATIONS_DELIVERY_LOG is off)"
        )
    for item in found:
        steps = ", ".join(
            f"{name} {datetime.datetime.fromtimestamp(at, datetime.UTC):%Y-%m-%d %H:%M:%S}"
            for name, at in item["times"].items()
        )
        line = f"{printable(item['channel'], 40)}  {printable(item['recipient'], 100)}  "
        line += f"{item['status']}  ({steps})"
        if item["error"]:
            line += f"  error: {printable(item['error'], 300)}"
        click.echo(line)
    click.echo(f"{len(found)} record(s)")


@cli.command("scheduled")
@click.option(
    "--limit", type=click.IntRange(min=1), default=1000, metavar="N", help="At most N (1000)."
)
def list_scheduled(limit: int) -> None:
    """List the scheduled sends still pending, soonest first: event id, due
    time (UTC), type, recipients.

    \f
    :param limit: at most this many.
    """
    from .workflows import scheduled

    found = scheduled.scheduled(limit)
    for item in found:
        recipients = ",".join(str(r) for r in item["recipients"]) or "(broadcast)"
        line = f"{printable(item['event_id'], 100)}  {item['due']:%Y-%m-%d %H:%M:%S} UTC  "
        line += f"{printable(item['event_type'], 100)}  to={printable(recipients, 300)}"
        if item["running"]:
            line += "  (being sent)"
        elif item["attempts"]:
            line += f"  (failed {item['attempts']} time(s), retrying)"
        click.echo(line)
    click.echo(f"{len(found)} scheduled send(s)")


@cli.command("replay")
def replay() -> None:
    """Enqueue the dead letters again (and remove them from the list)."""
    click.echo(f"replayed {dead_letters.replay_dead_letters()} dead letter(s)")


@cli.command("send")
@click.option("--type", "event_type", required=True, help="The event type, e.g. message.")
@click.option("--title", default="", help="The event's title.")
@click.option("--body", default="", help="The event's body.")
@click.option(
    "--to",
    "recipients",
    multiple=True,
    metavar="USER",
    help="A recipient's user id; repeat for several. None: a broadcast.",
)
@click.option("--sender", default="", help="The sender's user id (or e.g. system).")
@click.option(
    "--hub",
    "hub_label",
    metavar="LABEL",
    help="Check that the event reaches this hub: fail, sending nothing, when no hub "
    "has this label or its filter rejects the event. Every hub whose filter passes "
    "still gets the event.",
)
def send(
    event_type: str,
    title: str,
    body: str,
    recipients: tuple[str, ...],
    sender: str,
    hub_label: str | None,
) -> None:
    """Send an event through every hub, as notifications.send() does, and
    print its id. The Celery workers run the consumers.

    \f
    :param event_type: the event type.
    :param title: the title.
    :param body: the body.
    :param recipients: the recipients' user ids (none: a broadcast).
    :param sender: the sender's user id.
    :param hub_label: a hub the event must reach, or ``None``.
    """
    extension = get_state().extension
    try:
        event = Event(None, event_type, title, body, sender=sender, recipients=list(recipients))
    except InvalidEventError as exc:
        raise click.UsageError(str(exc)) from None  # "invalid event: <field>: ..."
    if hub_label is not None:
        hub = extension.get_hub(hub_label)
        if hub is None:
            known = ", ".join(repr(h.label) for h in extension.hubs) or "none"
            raise click.BadParameter(
                f"no hub labelled {hub_label!r} (hubs: {known})", param_hint="--hub"
            )
        if not hub.filter(event):
            raise click.BadParameter(
                f"the event does not pass the filter of hub {hub_label!r} ({hub.filter!r}); "
                "nothing sent",
                param_hint="--hub",
            )
    try:
        sent = extension.send(event)
    except NotificationsUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(sent["event_id"])


@cli.command("tail")
@click.argument("hub_label", metavar="HUB")
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Stop after N events (default: run until Ctrl-C).",
)
def tail(hub_label: str, count: int | None) -> None:
    """Print each event pushed to the hub labelled HUB as one JSON line, live.

    Only events published from now on are printed (no history); unread-count
    messages are skipped.

    \f
    :param hub_label: the hub's label.
    :param count: stop after this many events; ``None``: until interrupted.
    """
    extension = get_state().extension
    hub = extension.get_hub(hub_label)
    if hub is None:
        known = ", ".join(repr(h.label) for h in extension.hubs) or "none"
        raise click.BadParameter(f"no hub labelled {hub_label!r} (hubs: {known})", param_hint="HUB")
    backend = extension.create_backend()
    backend.subscribe(hub.hub_id)
    click.echo(f"listening to hub {hub.label!r} ({hub.hub_id}); Ctrl-C stops", err=True)
    printed = 0
    try:
        for message in backend.listen():
            try:
                event = json.loads(message["data"])
            except ValueError:
                continue
            if not isinstance(event, dict) or "event_type" not in event:
                continue  # an unread-counts envelope, not an event
            line = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
            click.echo(printable(line, None))  # no terminal escapes from event text
            printed += 1
            if count is not None and printed >= count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        backend.close()


@cli.command("vapid-keys", with_appcontext=False)
def vapid_keys() -> None:
    """Generate a VAPID key pair for Web Push and print its two config lines."""
    from .webpush.keys import PRIVATE_KEY, PUBLIC_KEY, generate_vapid_keys

    try:
        private_key, public_key = generate_vapid_keys()
    except ConfigurationError as exc:  # the webpush extra is not installed
        raise click.ClickException(str(exc)) from None
    click.echo(f'{PRIVATE_KEY} = "{private_key}"')
    click.echo(f'{PUBLIC_KEY} = "{public_key}"')
    click.echo(
        "# keep the private key secret; also set NOTIFICATIONS_VAPID_CLAIMS_SUB "
        '(e.g. "mailto:admin@example.com")',
        err=True,
    )
