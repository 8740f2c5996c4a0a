"""0.1's push modules, kept as aliases: the classes live in
:mod:`flask_notifications.consumers.push_consumer` and
:mod:`flask_notifications.stream.notifier`."""
