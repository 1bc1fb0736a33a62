"""Start-up refusals: a production process without a SECRET_KEY must never serve or send.

Commands that only read or change the schema (makemigrations, migrate) run without one, so that
a fresh checkout can be inspected; everything that serves or sends refuses to start.
"""

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

MISSING_SECRET_KEY = "SECRET_KEY is required when DEBUG is off (or set DEBUG=true)."


def require_secret_key() -> None:
    """Called where serving starts: the WSGI and ASGI apps, the Celery worker and beat."""
    if settings.SECRET_KEY_MISSING:
        raise ImproperlyConfigured(MISSING_SECRET_KEY)


@register(Tags.security, deploy=True)
def secret_key_is_set(app_configs: object, **kwargs: object) -> list[Error]:
    if settings.SECRET_KEY_MISSING:
        return [Error(MISSING_SECRET_KEY, id="outreach.E001")]
    return []
