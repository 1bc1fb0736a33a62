"""The Celery application and its one beat schedule."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach_site.settings")

app = Celery("outreach")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Every periodic job of the product, in one place. The embedded worker ticks these same entries
# when there is no Redis, so the two modes never drift apart. Later issues add the dispatcher.
app.conf.beat_schedule = {}
