"""The inbox tables (SQLAlchemy Core), in a :class:`~sqlalchemy.MetaData` of their own.

Alembic / Flask-Migrate users: add :data:`metadata` to ``target_metadata``
(``target_metadata = [db.metadata, flask_notifications.inbox.models.metadata]``)
so autogenerate neither misses nor drops these tables. Without migrations,
they are created on first use.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

#: The unique partial index that keeps one unread item per (recipient, group).
GROUP_INDEX = "ux_flask_notifications_unread_group"
#: Its predicate (also the upsert's ``index_where``).
GROUP_WHERE = text("read_at IS NULL AND group_key IS NOT NULL")
#: The columns grouping added to :data:`notifications` (checked on first use).
GROUP_COLUMNS = ("group_key", "count", "actors", "actor_count")
#: The column that tells apps sharing one database apart in the tables their
#: workers sweep (timers, digest and throttle holds): the app's
#: ``NOTIFICATIONS_REDIS_PREFIX``, the same in its web processes and workers.
SCOPE_COLUMN = "scope"
#: How long a scope may be (that of ``NOTIFICATIONS_REDIS_PREFIX``).
_SCOPE_LENGTH = 64

#: One row per recipient of a stored notification.
notifications = Table(
    "flask_notifications",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("recipient", String(256), nullable=False),
    Column("name", String(128), nullable=False),
    Column("event_id", String(256), nullable=True),
    Column("event_type", String(128), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Column("icon", String(1024), nullable=True),
    Column("client_action", String(256), nullable=True),
    Column("timestamp", Float, nullable=False),
    Column("read_at", Float, nullable=True),
    # Grouping (see inbox.groups): the event's group, how many events the
    # item stands for, the last few distinct senders (newest first) and how
    # many distinct senders in all. Added with grouping: see docs/inbox.rst,
    # "Upgrading an existing inbox".
    Column("group_key", String(256), nullable=True),
    Column("count", Integer, nullable=False, server_default=text("1")),
    Column("actors", JSON, nullable=True),
    Column("actor_count", Integer, nullable=False, server_default=text("0")),
    # "since" and newest-first pages of one user
    Index("ix_flask_notifications_recipient_ts", "recipient", "timestamp", "id"),
    # unread counts: only unread rows are indexed
    Index(
        "ix_flask_notifications_unread",
        "recipient",
        "timestamp",
        sqlite_where=text("read_at IS NULL"),
        postgresql_where=text("read_at IS NULL"),
    ),
    # replace-by-name
    Index("ix_flask_notifications_recipient_name", "recipient", "name"),
    # one unread item per (recipient, group): the upsert's conflict target
    Index(
        GROUP_INDEX,
        "recipient",
        "group_key",
        unique=True,
        sqlite_where=GROUP_WHERE,
        postgresql_where=GROUP_WHERE,
    ),
    # ids are never reused (SQLite would reuse the highest one after a delete)
    sqlite_autoincrement=True,
)

#: The distinct senders of each grouped item (for its ``actor_count``).
group_actors = Table(
    "flask_notification_group_actors",
    metadata,
    Column("notification_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("actor", String(256), primary_key=True),
)

#: Opt-outs: a user does not want ``event_type`` (``"*"``: any) on ``channel``.
preferences = Table(
    "flask_notification_preferences",
    metadata,
    Column("recipient", String(256), primary_key=True),
    Column("event_type", String(128), primary_key=True),
    Column("channel", String(32), primary_key=True),
)

#: Category switches: a user does not want ``category`` on ``channel``
#: (see :meth:`Preferences.set <flask_notifications.inbox.Preferences.set>`).
category_preferences = Table(
    "flask_notification_category_preferences",
    metadata,
    Column("recipient", String(256), primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("category", String(64), primary_key=True),
)

#: Digests on the user's clock: one row per (user, channel) with a digest set
#: (see :meth:`Preferences.set_digest <flask_notifications.inbox.Preferences.set_digest>`).
digest_settings = Table(
    "flask_notification_digest_settings",
    metadata,
    Column("recipient", String(256), primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("frequency", String(16), nullable=False),
    Column("hour", Integer, nullable=False),
    Column("weekday", Integer, nullable=False),
    Column("timezone", String(64), nullable=False),
)

#: Events held for a digest (an e-mail consumer's ``digest=`` window, or a
#: user's digest), one row per (consumer, address, event); deleted once the
#: digest listing them is sent. ``recipient`` is the user id, or ``""`` for a
#: fixed address.
digest_items = Table(
    "flask_notification_digest_items",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(SCOPE_COLUMN, String(_SCOPE_LENGTH), nullable=False),
    Column("consumer", String(256), nullable=False),
    Column("address", String(320), nullable=False),
    Column("recipient", String(256), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("event_id", String(256), nullable=False),
    Column("event", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index(
        "ux_flask_notification_digest_items_scope_event",
        SCOPE_COLUMN,
        "consumer",
        "address",
        "event_id",
        unique=True,
    ),
    Index("ix_flask_notification_digest_items_recipient", "recipient", "channel"),
    sqlite_autoincrement=True,
)

#: Web Push subscriptions: one row per browser (``PushSubscription.toJSON()``),
#: unique by endpoint; see :class:`~flask_notifications.webpush.PushSubscriptions`.
push_subscriptions = Table(
    "flask_notification_push_subscriptions",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("recipient", String(256), nullable=False),
    Column("endpoint", String(2048), nullable=False),
    Column("p256dh", String(128), nullable=False),
    Column("auth", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ux_flask_notification_push_subscriptions_endpoint", "endpoint", unique=True),
    Index("ix_flask_notification_push_subscriptions_recipient", "recipient"),
    sqlite_autoincrement=True,
)

#: Native apps' push tokens (APNs / FCM): one row per device, unique by token;
#: see :class:`~flask_notifications.mobile.Devices`.
mobile_devices = Table(
    "flask_notification_mobile_devices",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("recipient", String(256), nullable=False),
    Column("platform", String(16), nullable=False),
    Column("token", String(2048), nullable=False),
    Column("registered_at", Float, nullable=False),
    Index("ux_flask_notification_mobile_devices_token", "token", unique=True),
    Index("ix_flask_notification_mobile_devices_recipient", "recipient"),
    sqlite_autoincrement=True,
)

#: Model events written in the transaction of the model change they describe,
#: deleted once sent; workers send what a dying web process left behind.
#: See :mod:`flask_notifications.inbox.model_outbox`.
model_outbox = Table(
    "flask_notification_outbox",
    metadata,
    Column("event_id", String(256), primary_key=True),
    Column(SCOPE_COLUMN, String(_SCOPE_LENGTH), nullable=False),
    Column("event", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_flask_notification_outbox_scope_created_at", SCOPE_COLUMN, "created_at"),
)

#: Durable timers (scheduled sends, escalations...): one row per timer, unique
#: by ``(scope, key)``, claimed by a worker's sweeper with a lease; see
#: :mod:`flask_notifications.workflows.timers`.
timers = Table(
    "flask_notification_timers",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(SCOPE_COLUMN, String(_SCOPE_LENGTH), nullable=False),
    Column("key", String(256), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("due_at", Float, nullable=False),
    Column("payload", Text, nullable=False),
    # A sweeper that claimed the timer holds it until then (epoch seconds).
    Column("lease_until", Float, nullable=True),
    # Which claim holds it: the claiming sweep reads back its own rows by it.
    Column("lease_token", String(32), nullable=True),
    # Failed runs so far: retried with backoff, a dead letter after the last.
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Index("ux_flask_notification_timers_scope_key", SCOPE_COLUMN, "key", unique=True),
    Index("ix_flask_notification_timers_scope_due_at", SCOPE_COLUMN, "due_at"),
    sqlite_autoincrement=True,
)

#: Events a hub's throttle held for a recipient, kept until the summary of
#: their window is sent; see :mod:`flask_notifications.workflows.throttle`.
throttled = Table(
    "flask_notification_throttled",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(SCOPE_COLUMN, String(_SCOPE_LENGTH), nullable=False),
    Column("hub_id", String(64), nullable=False),
    Column("recipient", String(256), nullable=False),
    Column("event_id", String(256), nullable=False),
    Column("event_type", String(128), nullable=False),
    Column("title", Text, nullable=False),
    # When the window the event was held in ends (epoch seconds): its summary's time.
    Column("window_end", Float, nullable=False),
    Column("held_at", Float, nullable=False),
    Index(
        "ux_flask_notification_throttled_scope_event",
        SCOPE_COLUMN,
        "hub_id",
        "recipient",
        "event_id",
        unique=True,
    ),
    Index(
        "ix_flask_notification_throttled_scope_window",
        SCOPE_COLUMN,
        "hub_id",
        "recipient",
        "window_end",
    ),
    sqlite_autoincrement=True,
)

#: The tables the workers sweep, scoped by app (:data:`SCOPE_COLUMN`), each
#: with the unique index that must include the scope (``None``: no unique
#: index beyond the primary key); checked on first use, like grouping's columns.
SCOPED = {
    digest_items.name: "ux_flask_notification_digest_items_scope_event",
    timers.name: "ux_flask_notification_timers_scope_key",
    throttled.name: "ux_flask_notification_throttled_scope_event",
    model_outbox.name: None,
}
