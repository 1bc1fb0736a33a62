import logging
import time
from datetime import UTC, datetime

from celery.schedules import maybe_schedule
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from outreach_site.celery import app

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "The embedded run's stand-in for Celery worker + beat: ticks the beat schedule in this "
        "process and runs the tasks it enqueues inline. Production uses real Celery instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ticks", type=int, default=0, help="Stop after N loops (0: forever)")

    def handle(self, *args: object, **opts: int) -> None:
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            raise CommandError("REDIS_URL is set: run `celery -A outreach_site worker --beat`.")
        # Celery finds tasks lazily; the worker must know them all before it ticks.
        app.loader.import_default_modules()
        entries = {
            name: (maybe_schedule(entry["schedule"]), entry)
            for name, entry in app.conf.beat_schedule.items()
        }
        self.stdout.write(f"Embedded worker ticking {len(entries)} periodic job(s).")
        last_run: dict[str, datetime] = {}
        loops = 0
        while not opts["ticks"] or loops < opts["ticks"]:
            loops += 1
            for name, (schedule, entry) in entries.items():
                due, _ = schedule.is_due(last_run.get(name, datetime.fromtimestamp(0, UTC)))
                if not due:
                    continue
                last_run[name] = datetime.now(UTC)
                try:
                    app.tasks[entry["task"]].apply_async(
                        args=entry.get("args", ()), kwargs=entry.get("kwargs", {})
                    )
                except Exception:
                    # One failing job must not stop the others; the error is in the log.
                    log.exception("periodic job %s failed", name)
            time.sleep(0.5)
