"""WSGI entry point for gunicorn."""

import os

from django.core.wsgi import get_wsgi_application

from outreach_site.checks import require_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach_site.settings")
require_secret_key()
application = get_wsgi_application()
