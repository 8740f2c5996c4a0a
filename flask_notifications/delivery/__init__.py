"""Delivery: everything between :meth:`Notifications.send
<flask_notifications.Notifications.send>` and a consumer's ``consume``.

- :mod:`~flask_notifications.delivery.request`: the request side (validate,
  filter, claim the event id and record the outbox, enqueue one message);
- :mod:`~flask_notifications.delivery.worker`: the worker side (run an
  event's consumers, each guarded by its completion record; retries, dead
  letters);
- :mod:`~flask_notifications.delivery.sweeper`: the workers' sweeper (the
  outbox, the model-event outbox);
- :mod:`~flask_notifications.delivery.records`,
  :mod:`~flask_notifications.delivery.event_records` and
  :mod:`~flask_notifications.delivery.dead_letters`: the Redis records;
- :mod:`~flask_notifications.delivery.log` (and its HTTP view in
  :mod:`~flask_notifications.delivery.views`): the delivery log, each
  (event, recipient, channel)'s status;
- :mod:`~flask_notifications.delivery.apps`,
  :mod:`~flask_notifications.delivery.tasks` and
  :mod:`~flask_notifications.delivery.registry`: the Celery wiring (which
  Celery and Flask app a task runs in, the task classes, their registration).

The modules depend on each other in that order, from the bottom:
``apps`` <- ``tasks``; ``records`` <- ``event_records``, ``dead_letters``; ``worker``,
``sweeper`` and ``request`` use those; ``registry`` registers the worker's
task bodies and the sweeper. Importing any of them registers nothing.
"""
