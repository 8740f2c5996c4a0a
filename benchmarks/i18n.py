"""The cost of rendering e-mails in each recipient's language.

Renders the e-mails of one event for ``--recipients`` recipients with the
e-mail consumer's own code (``EmailConsumer.build_all``: locales resolved,
recipients grouped by locale, texts translated, templates rendered), no SMTP,
in several set-ups measured in the same run:

- ``plain``: no Flask-Babel on the app, an event with finished text: nothing
  to translate (the baseline);
- ``babel, 1 locale``: Flask-Babel and a ``locale_resolver``, every recipient
  in English, finished text;
- ``msgid, 2 locales``: an event with message ids and parameters, half the
  recipients French, half English;
- ``msgid, 10 locales``: the same over ten locales (only French has a catalog;
  the others fall back to the msgid);
- the ``plain`` and ``msgid, 2 locales`` cases again with templates that name
  the recipient (``{{ address }}``), which must be rendered per recipient
  instead of once per locale.

The resolver is a dict lookup; a real one reading a database adds its own
cost per recipient. Prints e-mails rendered per second (median of
``--rounds`` interleaved rounds) and the time per event.

Usage: python benchmarks/i18n.py [--recipients 1000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from flask import Flask

from flask_notifications import Event, Notifications
from flask_notifications.consumers import FlaskEmailConsumer

LOCALES10 = ["fr", "en", "de", "es", "it", "nl", "pt", "sv", "pl", "ja"]
PER_RECIPIENT_TXT = "{{ _('Open') }} {{ event.title }}\n{{ event.body }}\n{{ address }}\n"
PER_RECIPIENT_HTML = "<p>{{ event.title }}</p><p>{{ event.body }}</p><p>{{ address }}</p>"


TITLE, BODY = "New comment on “%(post)s”", "%(author)s: %(text)s"
FRENCH = {TITLE: "Nouveau commentaire sur « %(post)s »", BODY: "%(author)s : %(text)s"}


def write_catalog(directory: Path) -> None:
    """The app's French catalog (its ``messages`` domain)."""
    from babel.messages import mofile
    from babel.messages.catalog import Catalog

    catalog = Catalog(locale="fr")
    for msgid, text in FRENCH.items():
        catalog.add(msgid, text)
    target = directory / "fr" / "LC_MESSAGES"
    target.mkdir(parents=True)
    with open(target / "messages.mo", "wb") as out:
        mofile.write_mo(out, catalog)


def make_app(
    babel: bool, locales: list[str], templates: Path | None, translations: Path
) -> tuple[Flask, object]:
    app = Flask("bench_i18n")
    # Nothing connects to Redis here: rendering only.
    app.config.update(
        NOTIFICATIONS_REDIS_URL="redis://127.0.0.1:9/0",
        BABEL_TRANSLATION_DIRECTORIES=str(translations),
    )
    if templates is not None:
        app.template_folder = str(templates)
    if babel:
        from flask_babel import Babel

        Babel(app)
    notifications = Notifications(app)
    if babel:
        table = {f"u{i}": locales[i % len(locales)] for i in range(100_000)}
        notifications.locale_resolver(table.get)
    consumer = FlaskEmailConsumer("noreply@example.com")
    return app, consumer


def event(recipients: int, msgid: bool) -> Event:
    fields = {}
    if msgid:
        fields["i18n"] = {
            "title": TITLE,
            "body": BODY,
            "params": {"post": "Bikes", "author": "Ann", "text": "nice ride! " * 4},
        }
    return Event(
        None,
        "comment",
        "New comment on “Bikes”",
        "Ann: nice ride! " * 4,
        recipients=[f"u{i}" for i in range(recipients)],
        url="https://example.org/posts/7",
        **fields,
    )


def rate_of(app: Flask, consumer: object, ev: Event) -> float:
    """E-mails rendered per second for one call of ``build_all``."""
    pairs = [(u, f"{u}@example.org") for u in ev["recipients"]]
    with app.app_context():
        start = time.perf_counter()
        mails = consumer.build_all(ev, pairs)
        return len(mails) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        templates = Path(tmp) / "templates"
        translations = Path(tmp) / "translations"
        write_catalog(translations)
        mail = templates / "flask_notifications" / "mail"
        mail.mkdir(parents=True)
        (mail / "notification.txt").write_text(PER_RECIPIENT_TXT)
        (mail / "notification.html").write_text(PER_RECIPIENT_HTML)
        cases = [
            ("plain (no Babel, finished text)", False, ["en"], False, None),
            ("babel, 1 locale, finished text", True, ["en"], False, None),
            ("msgid, 2 locales (fr, en)", True, ["fr", "en"], True, None),
            ("msgid, 10 locales", True, LOCALES10, True, None),
            ("plain, per-recipient template", False, ["en"], False, templates),
            ("msgid, 2 locales, per-recipient template", True, ["fr", "en"], True, templates),
        ]
        built = []
        for name, babel, locales, msgid, folder in cases:
            app, consumer = make_app(babel, locales, folder, translations)
            ev = event(args.recipients, msgid)
            rate_of(app, consumer, event(10, msgid))  # warm: templates, catalogs
            built.append((name, app, consumer, ev))
        # Interleaved rounds: each round runs every case once, so a busy moment
        # of the machine weighs on all of them alike.
        rates: dict[str, list[float]] = {name: [] for name, *_ in built}
        for _ in range(args.rounds):
            for name, app, consumer, ev in built:
                rates[name].append(rate_of(app, consumer, ev))
        print(f"{args.recipients} recipients per event, median of {args.rounds} rounds")
        print(f"{'case':44} {'e-mails/s':>10} {'ms/event':>9} {'vs plain':>8}")
        base = statistics.median(rates[built[0][0]])
        for name, *_ in built:
            rate = statistics.median(rates[name])
            per_event = args.recipients / rate * 1000
            print(f"{name:44} {rate:10,.0f} {per_event:9.1f} {rate / base:8.2f}")


if __name__ == "__main__":
    main()
