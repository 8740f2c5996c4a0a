"""Blinker signals, for observability.

Each signal is sent with the Flask app as sender:

- :data:`event_sent` (``event``, ``tasks``): ``send()`` enqueued the event,
  ``tasks`` being how many consumer tasks;
- :data:`event_filtered` (``event``, ``hub``): a hub's filter refused the event;
- :data:`event_consumed` (``event``, ``hub``, ``consumer``): a consumer finished it;
- :data:`consumer_failed` (``event``, ``hub``, ``consumer``, ``exception``): a
  consumer gave up on it after its last retry (it is in the dead letters).
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: ``send()`` enqueued an event.
event_sent = _signals.signal("event-sent")
#: A hub's filter refused an event.
event_filtered = _signals.signal("event-filtered")
#: A consumer consumed an event.
event_consumed = _signals.signal("event-consumed")
#: A consumer failed for good (after its retries); the event is a dead letter.
consumer_failed = _signals.signal("consumer-failed")

__all__ = ["consumer_failed", "event_consumed", "event_filtered", "event_sent"]
