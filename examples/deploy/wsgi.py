"""The application object for WSGI servers: ``gunicorn -k gevent examples.deploy.wsgi:app``.

(``gunicorn -k gevent 'examples.deploy.app:create_app()'`` does the same.)
"""

from examples.deploy.app import create_app

app = create_app()
