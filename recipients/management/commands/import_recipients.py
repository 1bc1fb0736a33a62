"""Imports a recipient CSV from the shell, exactly as the upload form does."""

from datetime import datetime, tzinfo
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns.models import ActionNotAllowed, Campaign
from orgs.parsing import OUT_OF_RANGE, local_instant
from recipients.services import ListDatesRefused, recipient_list_import


class Command(BaseCommand):
    help = "Import a CSV file as a new recipient list; exits 1 and writes an error log if rejected."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("campaign_id", type=int)
        parser.add_argument("file", type=Path)
        parser.add_argument("--start", help="ISO 8601; without an offset, the org's timezone.")
        parser.add_argument("--end", help="ISO 8601; without an offset, the org's timezone.")
        parser.add_argument(
            "--max-recipients", type=int, help="Override the organization's limit (operators)."
        )
        parser.add_argument(
            "--allow-past",
            action="store_true",
            help="Keep a --start in the past (to replay a past day with dispatch --now); "
            "without it a past start means now.",
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            campaign = Campaign.objects.select_related("org").get(pk=options["campaign_id"])
        except Campaign.DoesNotExist:
            raise CommandError(f"No campaign with id {options['campaign_id']}.") from None
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"No file at {path}.")
        tz = campaign.org.tz
        start = _instant(options["start"], tz, "--start") or timezone.now()
        end = _instant(options["end"], tz, "--end")
        if end is not None and end <= start:
            raise CommandError("--end must be after --start.")
        try:
            with path.open("rb") as stream:
                result = recipient_list_import(
                    campaign=campaign,
                    stream=stream,
                    file_name=path.name,
                    start_at=start,
                    end_at=end,
                    user=None,
                    max_recipients=options["max_recipients"],
                    allow_past_start=options["allow_past"],
                )
        except ActionNotAllowed as error:
            raise CommandError(str(error)) from None
        except ListDatesRefused as error:
            raise CommandError(f"{error} Give a later --end, or --allow-past.") from None
        if result.accepted:
            rl = result.recipient_list
            self.stdout.write(
                f"Accepted: list {rl.pk} of campaign {campaign.pk} “{campaign.name}” with "
                f"{rl.recipient_count} recipients ({rl.duplicate_count} duplicates kept once, "
                f"{rl.suppressed_count} opted out); status {rl.get_status_display()}."
            )
            return
        rejected = result.rejected
        log_path = path.with_name(f"{path.stem}-errors.csv")
        with rejected.error_log.open("rb") as log:
            log_path.write_bytes(log.read())
        self.stderr.write(f"Rejected: {rejected.error_count} errors, nothing imported.")
        for kind, count in rejected.summary.items():
            self.stderr.write(f"  {kind}: {count}")
        self.stderr.write(f"Error log written to {log_path}")
        raise SystemExit(1)


def _instant(value: str | None, tz: tzinfo, flag: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parse_datetime(value.replace("Z", "+00:00"))
    except ValueError:  # well formed, but no such day or hour
        parsed = None
    if parsed is None:
        raise CommandError(f"{flag} {value!r} is not an ISO 8601 date and time.")
    # Without an offset it is the organization's time; either way, within the forms' years.
    instant = local_instant(parsed, parsed.tzinfo if timezone.is_aware(parsed) else tz)
    if instant is None:
        raise CommandError(f"{flag} {value!r}: {OUT_OF_RANGE}")
    return instant
