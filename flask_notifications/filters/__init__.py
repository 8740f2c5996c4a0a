"""Predefined filters; each also lives in a module of its own name
(``flask_notifications.filters.with_event_type.WithEventType``, ...).

``Not`` is the negation combinator from :mod:`flask_notifications.event_filter`,
exported here because the documentation's examples use it next to the filters.
"""

from ..event_filter import EventFilter, Not
from .after_date import AfterDate
from .always import Always
from .before_date import BeforeDate
from .expired import Expired
from .includes_recipient import IncludesRecipient
from .never import Never
from .with_event_type import WithEventType
from .with_id import WithId
from .with_recipients import WithRecipients
from .with_sender import WithSender
from .with_tag import WithTag

__all__ = [
    "AfterDate",
    "Always",
    "BeforeDate",
    "EventFilter",
    "Expired",
    "IncludesRecipient",
    "Never",
    "Not",
    "WithEventType",
    "WithId",
    "WithRecipients",
    "WithSender",
    "WithTag",
]
