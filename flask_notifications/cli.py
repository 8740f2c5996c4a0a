"""``flask notifications ...``: commands for operators."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from . import reliability
from ._state import get_state

cli = AppGroup("notifications", help="Flask-Notifications: hubs and dead letters.")


@cli.command("hubs")
def hubs() -> None:
    """List the hubs with their filters and consumers."""
    for hub in get_state().extension.hubs:
        visibility = "public" if hub.public else "private"
        click.echo(f"{hub.label}  ({hub.hub_id}, {visibility})")
        click.echo(f"  filter: {hub.filter!r}")
        for name in hub.consumers:
            click.echo(f"  consumer: {name}")


@cli.command("dead-letters")
def list_dead_letters() -> None:
    """List the consumer tasks that failed for good, newest first."""
    letters = reliability.dead_letters()
    for letter in letters:
        event_id = json.loads(letter["event"]).get("event_id", "?") if letter["event"] else "?"
        click.echo(f"{letter['task']}  hub={letter['hub_id']}  event={event_id}  {letter['error']}")
    click.echo(f"{len(letters)} dead letter(s)")


@cli.command("replay")
def replay() -> None:
    """Enqueue the dead letters again (and remove them from the list)."""
    click.echo(f"replayed {reliability.replay_dead_letters()} dead letter(s)")
