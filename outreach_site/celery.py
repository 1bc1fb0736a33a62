"""The Celery application and its one beat schedule."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach_site.settings")

app = Celery("outreach")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Every periodic job of the product, in one place. The embedded worker ticks these same entries
# when there is no Redis, so the two modes never drift apart.
app.conf.beat_schedule = {
    # The dispatcher: start due campaigns and lists, release due messages, finish what is done.
    # Short, so that releases are spread evenly; a lock inside keeps ticks from overlapping.
    "dispatch": {
        "task": "delivery.dispatch_tick",
        "schedule": float(os.environ.get("DISPATCH_TICK_SECONDS", "2")),
        "options": {"expires": 10},
    },
}
