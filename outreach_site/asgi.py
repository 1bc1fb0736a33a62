"""ASGI entry point."""

import os

from django.core.asgi import get_asgi_application

from outreach_site.checks import require_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach_site.settings")
require_secret_key()
application = get_asgi_application()
