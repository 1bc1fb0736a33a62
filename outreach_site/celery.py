"""The Celery application and its one beat schedule."""

import os

from celery import Celery
from celery.signals import beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach_site.settings")

app = Celery("outreach")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _refuse_without_secret_key(**kwargs: object) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from outreach_site.checks import require_secret_key

    try:
        require_secret_key()
    except ImproperlyConfigured as error:
        # Celery logs and ignores exceptions from signal handlers; SystemExit stops the process.
        raise SystemExit(str(error)) from None


# Every periodic job of the product, in one place. The embedded worker ticks these same entries
# when there is no Redis, so the two modes never drift apart.
app.conf.beat_schedule = {
    # The dispatcher: start due campaigns and lists, claim due messages into the ready queue,
    # finish what is done. Run in the beat itself (outreach_site/beat.py), never queued behind
    # sends; short, so that claims are spread evenly; a lock keeps ticks from overlapping.
    "dispatch": {
        "task": "delivery.dispatch_tick",
        "schedule": float(os.environ.get("DISPATCH_TICK_SECONDS", "2")),
    },
}
