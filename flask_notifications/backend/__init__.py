"""0.1's backend modules, kept as aliases of :mod:`flask_notifications.pubsub`."""
