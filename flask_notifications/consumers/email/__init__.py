"""0.1's e-mail consumer modules, kept as aliases: the classes live in
:mod:`flask_notifications.consumers`."""
