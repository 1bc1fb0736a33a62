"""One dispatcher tick at a chosen instant: for operators, for reproducing a problem, for tests."""

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from delivery.clock import Clock
from delivery.dispatch import dispatch_tick
from delivery.sending import send_batch
from delivery.tasks import tick_lock
from orgs.parsing import OUT_OF_RANGE, local_instant


class Command(BaseCommand):
    help = "Run exactly one dispatcher tick and print what it released per campaign."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", required=True)
        parser.add_argument("--now", help="The tick's instant, ISO 8601 with an offset or Z.")
        parser.add_argument(
            "--queue",
            action="store_true",
            help="Hand batches to Celery workers instead of sending them in this process.",
        )

    def handle(self, *args: object, **options: object) -> None:
        now = None
        if options["now"]:
            try:
                now = parse_datetime(options["now"].replace("Z", "+00:00"))
            except ValueError:  # well formed, but no such day or hour
                now = None
            if now is None or timezone.is_naive(now):
                raise CommandError("--now needs an ISO 8601 instant with an offset, e.g. …T14:00Z.")
            # The tick adds leases and days to it: only the years every date is kept to.
            if local_instant(now, now.tzinfo) is None:
                raise CommandError(f"--now {options['now']!r}: {OUT_OF_RANGE}")
        # One clock for the tick and the batches it sends here (with --queue, dispatch_tick
        # hands the same clock to the workers).
        clock = Clock.at(now)
        with tick_lock() as acquired:
            if not acquired:
                raise CommandError("Another tick is running; try again in a moment.")
            sent: list[dict] = []
            send = (
                None
                if options["queue"]
                else (lambda ids: sent.append(send_batch(ids, clock=clock).as_dict()))
            )
            report = dispatch_tick(now, send=send)
        for line in report.lines():
            self.stdout.write(line)
        for stats in sent:
            self.stdout.write(f"  batch: {stats}")
