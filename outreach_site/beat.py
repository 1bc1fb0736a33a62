"""The beat's scheduler: the dispatcher's tick runs here, in the beat process, not on a queue.

A tick queued behind sending tasks is late, and one that waited past its expiry was discarded:
under load, lease expiry, scheduled starts and completions slowed down with the very load they
manage. In the beat the tick runs on time whatever the workers are doing; two beats (or a beat
and `dispatch --once`) never tick at once (delivery/tasks.py `tick_lock`). Every other periodic
job is sent to the workers as usual.
"""

import logging

from celery.beat import PersistentScheduler
from django.db import close_old_connections

log = logging.getLogger(__name__)

# Periodic tasks this scheduler runs itself rather than queueing.
RUN_IN_BEAT = {"delivery.dispatch_tick"}


class Scheduler(PersistentScheduler):
    def setup_schedule(self) -> None:
        # Sets Django up (Celery's Django fixup does it on importing the task modules) and
        # registers the tasks this scheduler calls.
        self.app.loader.import_default_modules()
        super().setup_schedule()

    def apply_entry(self, entry, producer=None) -> None:
        if entry.task not in RUN_IN_BEAT:
            super().apply_entry(entry, producer=producer)
            return
        close_old_connections()
        try:
            self.app.tasks[entry.task](*entry.args, **entry.kwargs)
        except Exception:
            # Logged, and the next tick tries again: the beat itself must keep running.
            log.exception("periodic job %s failed in the beat", entry.name)
        finally:
            close_old_connections()
