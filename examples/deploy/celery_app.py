"""The Celery worker of the app factory: ``celery -A examples.deploy.celery_app:celery worker``.

Celery's ``-A`` takes a module attribute, not an expression: build the app
here, once, and hand Celery the Celery app of its extension.
"""

from examples.deploy.app import create_app

app = create_app()
celery = app.extensions["notifications"].celery
