"""0.1's log module, kept as an alias of
:mod:`flask_notifications.consumers.log_consumer`."""
