"""What a campaign is made of: senders, message templates, the campaign and its history."""

from datetime import time

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from delivery.windows import WeeklyHours, weekly_hours
from orgs.models import Organization
from orgs.parsing import EARLIEST, LATEST, OUT_OF_RANGE


class Channel(models.TextChoices):
    SMS = "sms", "SMS"
    EMAIL = "email", "Email"


# Common BCP 47 language tags offered for message templates and campaigns.
LANGUAGES = [
    ("en", "English"),
    ("en-US", "English (United States)"),
    ("en-GB", "English (United Kingdom)"),
    ("es", "Spanish"),
    ("es-MX", "Spanish (Mexico)"),
    ("es-US", "Spanish (United States)"),
    ("fr", "French"),
    ("fr-CA", "French (Canada)"),
    ("de", "German"),
    ("it", "Italian"),
    ("pt", "Portuguese"),
    ("pt-BR", "Portuguese (Brazil)"),
    ("nl", "Dutch"),
    ("pl", "Polish"),
    ("ru", "Russian"),
    ("uk", "Ukrainian"),
    ("ar", "Arabic"),
    ("he", "Hebrew"),
    ("hi", "Hindi"),
    ("bn", "Bengali"),
    ("ur", "Urdu"),
    ("zh-Hans", "Chinese (Simplified)"),
    ("zh-Hant", "Chinese (Traditional)"),
    ("ja", "Japanese"),
    ("ko", "Korean"),
    ("vi", "Vietnamese"),
    ("tl", "Tagalog"),
    ("th", "Thai"),
    ("id", "Indonesian"),
    ("tr", "Turkish"),
    ("el", "Greek"),
    ("sv", "Swedish"),
    ("da", "Danish"),
    ("nb", "Norwegian Bokmål"),
    ("fi", "Finnish"),
    ("cs", "Czech"),
    ("hu", "Hungarian"),
    ("ro", "Romanian"),
    ("ht", "Haitian Creole"),
]


class RatePeriod(models.TextChoices):
    SECOND = "second", "per second"
    MINUTE = "minute", "per minute"


# Defaults: a US long code sends about 1 SMS per second; email providers take far more.
DEFAULT_RATE = {Channel.SMS: (1, RatePeriod.SECOND), Channel.EMAIL: (100, RatePeriod.SECOND)}


# Said the same whichever organization holds it, so that the refusal reveals nobody.
SENDER_TAKEN = {
    "phone_number": "This number is already registered as a sender. A number belongs to one "
    "organization only; if it is yours, ask support to release it.",
    "messaging_service_sid": "This Messaging Service is already registered as a sender. It "
    "belongs to one organization only; if it is yours, ask support to release it.",
}


class Sender(models.Model):
    """An identity messages go out from: an SMS-capable number (or Messaging Service) or an email
    sender."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="senders")
    channel = models.CharField(max_length=5, choices=Channel.choices)
    label = models.CharField(max_length=100)
    # SMS
    phone_number = models.CharField("phone number", max_length=20, blank=True)
    messaging_service_sid = models.CharField("Messaging Service SID", max_length=34, blank=True)
    inbox_name = models.CharField(
        "reply inbox", max_length=100, blank=True, help_text="Where replies are routed."
    )
    # Email
    from_name = models.CharField(max_length=100, blank=True)
    from_email = models.EmailField("from address", blank=True)
    reply_to = models.EmailField("reply-to", blank=True)
    # Throughput
    rate_limit = models.PositiveIntegerField(
        "throughput", validators=[MinValueValidator(1)], help_text="Messages at most, per period."
    )
    rate_period = models.CharField(max_length=6, choices=RatePeriod.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["channel", "label"]
        constraints = [
            # A number or Messaging Service identifies one organization to the outside world:
            # its replies are routed there, and nobody else may send as it.
            models.UniqueConstraint(
                fields=["phone_number"],
                condition=~models.Q(phone_number=""),
                name="sender_phone_number_unique",
                violation_error_message=SENDER_TAKEN["phone_number"],
            ),
            models.UniqueConstraint(
                fields=["messaging_service_sid"],
                condition=~models.Q(messaging_service_sid=""),
                name="sender_messaging_service_unique",
                violation_error_message=SENDER_TAKEN["messaging_service_sid"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.address})"

    @property
    def address(self) -> str:
        if self.channel == Channel.SMS:
            return self.phone_number or self.messaging_service_sid
        return self.from_email

    @property
    def messages_per_second(self) -> float:
        return self.rate_limit / (60 if self.rate_period == RatePeriod.MINUTE else 1)

    @property
    def throughput_display(self) -> str:
        plural = "s" if self.rate_limit != 1 else ""
        return f"{self.rate_limit} message{plural} {self.get_rate_period_display()}"

    def clean(self) -> None:
        if self.channel == Channel.SMS:
            self._clean_sms()
        elif self.channel == Channel.EMAIL and not self.from_email:
            raise ValidationError({"from_email": "An email sender needs a from address."})

    def _clean_sms(self) -> None:
        if not self.phone_number and not self.messaging_service_sid:
            raise ValidationError(
                {"phone_number": "Give a phone number or a Twilio Messaging Service SID."}
            )
        if self.messaging_service_sid and not (
            len(self.messaging_service_sid) == 34 and self.messaging_service_sid.startswith("MG")
        ):
            raise ValidationError(
                {"messaging_service_sid": "A Messaging Service SID is MG and 32 more characters."}
            )
        if self.phone_number:
            self.phone_number = normalise_phone(self.phone_number, self.org.default_region)
        # The constraints below hold it in the database too; this puts the refusal on the field.
        taken = {
            field: SENDER_TAKEN[field]
            for field in ("phone_number", "messaging_service_sid")
            if getattr(self, field)
            and Sender.objects.filter(**{field: getattr(self, field)}).exclude(pk=self.pk).exists()
        }
        if taken:
            raise ValidationError(taken)


def normalise_phone(raw: str, region: str) -> str:
    """The number in E.164, or a ValidationError saying why it is not a valid phone number."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise ValidationError(f"“{raw}” is not a phone number.") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(f"“{raw}” is not a valid phone number.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class MessageTemplate(models.Model):
    """A reusable message ("answer") in one language for one channel."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="templates")
    name = models.CharField(max_length=200)
    language = models.CharField(max_length=10, choices=LANGUAGES, default="en")
    channel = models.CharField(max_length=5, choices=Channel.choices)
    body = models.TextField("message", blank=True, help_text="The SMS text.")
    subject = models.CharField(max_length=255, blank=True)
    html_body = models.TextField("HTML body", blank=True)
    text_body = models.TextField("plain-text part", blank=True)
    text_is_custom = models.BooleanField(
        "plain text edited by hand",
        default=False,
        help_text="Otherwise the plain-text part is derived from the HTML.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.language})"


def attachment_path(instance: "TemplateAttachment", filename: str) -> str:
    return f"attachments/{instance.template.org_id}/{instance.template_id}/{filename}"


class TemplateAttachment(models.Model):
    template = models.ForeignKey(
        MessageTemplate, on_delete=models.CASCADE, related_name="attachments"
    )
    file = models.FileField(upload_to=attachment_path)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()

    def __str__(self) -> str:
        return self.filename


class Status(models.TextChoices):
    READY = "ready", "Ready"
    SCHEDULED = "scheduled", "Scheduled"
    IN_PROGRESS = "in_progress", "In Progress"
    PAUSED = "paused", "Paused"
    COMPLETE = "complete", "Complete"
    COMPLETE_WITH_ERRORS = "complete_errors", "Complete (with errors)"
    ACTIVE_RETRIES = "active_retries", "Active Retries"
    STOPPED = "stopped", "Stopped"


FINISHED = frozenset({Status.COMPLETE, Status.COMPLETE_WITH_ERRORS, Status.ACTIVE_RETRIES})

# The lifecycle, written once: which actions each status allows.
ALLOWED_ACTIONS: dict[str, frozenset[Status]] = {
    "edit": frozenset({Status.READY}),
    "delete": frozenset({Status.READY, Status.COMPLETE, Status.COMPLETE_WITH_ERRORS}),
    "add_list": frozenset({Status.READY, Status.SCHEDULED, Status.IN_PROGRESS, Status.PAUSED}),
    "run": frozenset({Status.READY}),
    "schedule": frozenset({Status.READY}),
    "unschedule": frozenset({Status.SCHEDULED}),
    "pause": frozenset({Status.IN_PROGRESS}),
    "resume": frozenset({Status.PAUSED}),
    "stop": frozenset({Status.SCHEDULED, Status.IN_PROGRESS, Status.PAUSED}),
    "retry": frozenset({Status.COMPLETE_WITH_ERRORS, Status.ACTIVE_RETRIES}),
    # Unconfirmed ("unknown") messages may have reached their recipients: asking the provider
    # changes only them; sending them again restarts a finished campaign.
    "reconcile": frozenset(
        {
            Status.IN_PROGRESS,
            Status.PAUSED,
            Status.COMPLETE,
            Status.COMPLETE_WITH_ERRORS,
            Status.ACTIVE_RETRIES,
            Status.STOPPED,
        }
    ),
    "retry_unconfirmed": frozenset(
        {Status.COMPLETE, Status.COMPLETE_WITH_ERRORS, Status.ACTIVE_RETRIES}
    ),
}
# The statuses the dispatcher works on: an error of its tick is shown only in these.
TICKED = frozenset({Status.SCHEDULED, Status.IN_PROGRESS, Status.PAUSED, Status.ACTIVE_RETRIES})

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


class ActionNotAllowed(Exception):
    """An action the campaign's status does not allow; its message is shown to the user."""


class Campaign(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    channel = models.CharField(max_length=5, choices=Channel.choices)
    sender = models.ForeignKey(Sender, on_delete=models.PROTECT, related_name="campaigns")
    language = models.CharField(max_length=10, choices=LANGUAGES, default="en")
    template = models.ForeignKey(
        MessageTemplate, on_delete=models.PROTECT, related_name="campaigns"
    )
    # Open days only: {"0": ["09:00", "17:00"], …} with 0 = Monday; a missing day is Closed.
    # Times are local to each recipient.
    schedule = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    # Scheduled campaigns start at run_at, or as soon after as their channel is free.
    run_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Engagement, counted as webhooks arrive (first open/click per message; every reply).
    opened_count = models.PositiveIntegerField(default=0)
    clicked_count = models.PositiveIntegerField(default=0)
    replied_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_activity_at = models.DateTimeField(default=timezone.now)
    # Set by a dispatcher tick that failed for this campaign, cleared by the next one that works
    # (delivery/dispatch.py): what went wrong, for operators, and since when.
    error = models.CharField(max_length=500, blank=True)
    error_at = models.DateTimeField(null=True, blank=True)

    # Counted by the pages that show it (delivery.selectors.unconfirmed_counts): messages the
    # provider never confirmed, which a plain "Complete" would hide.
    unconfirmed = 0

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["org", "status"]), models.Index(fields=["org", "channel"])]
        constraints = [
            # The per-channel lock: the database itself refuses a second running campaign.
            models.UniqueConstraint(
                fields=["org", "channel"],
                condition=models.Q(status__in=["in_progress", "paused"]),
                name="one_running_campaign_per_channel",
                violation_error_message="Another campaign of this channel is already running.",
            ),
            # PostgreSQL stores instants psycopg cannot read back (9999-12-31 23:59 in New York
            # is year 10000 in UTC), and a row it cannot read breaks every page and tick that
            # reads it: the database keeps to the range the forms check (orgs.parsing).
            models.CheckConstraint(
                condition=models.Q(run_at__gte=EARLIEST, run_at__lt=LATEST)
                | models.Q(run_at__isnull=True),
                name="campaign_run_at_in_range",
                violation_error_message=OUT_OF_RANGE,
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def status_text(self) -> str:
        """The status as pages say it: "Complete — 31 unconfirmed" while the provider has not
        confirmed some messages (set `unconfirmed` first)."""
        label = self.get_status_display()
        return f"{label} — {self.unconfirmed:,} unconfirmed" if self.unconfirmed else label

    @property
    def stopped_by_error(self) -> bool:
        """Whether the dispatcher's last tick failed for this campaign (see `error`)."""
        return self.error_at is not None and self.status in TICKED

    def can(self, action: str) -> bool:
        return self.status in ALLOWED_ACTIONS[action]

    @property
    def allowed_actions(self) -> frozenset[str]:
        return frozenset(
            action for action, statuses in ALLOWED_ACTIONS.items() if self.status in statuses
        )

    def require(self, action: str) -> None:
        """Raises ActionNotAllowed, with a message for the user, unless the status allows it."""
        if not self.can(action):
            verb = action.replace("_", " ")
            raise ActionNotAllowed(
                f"A campaign that is {self.get_status_display()} cannot be {_PAST[verb]}."
            )

    @property
    def open_days(self) -> dict[int, tuple[time, time]]:
        """The schedule as weekday → (open, close) local times, open days only; a day stored in
        a shape no form writes is left out (see `schedule_problem`), so pages still show."""
        days = {}
        schedule = self.schedule if isinstance(self.schedule, dict) else {}
        for day, hours in schedule.items():
            try:
                days[int(day)] = (time.fromisoformat(hours[0]), time.fromisoformat(hours[1]))
            except (TypeError, ValueError, IndexError, KeyError):
                continue
        return dict(sorted(days.items()))

    @property
    def schedule_problem(self) -> str:
        """Why the stored schedule cannot be read, or "" when it can: the dispatcher does not
        send by a schedule it cannot read, and the pages say so instead of guessing."""
        try:
            weekly_hours(self.schedule)
        except (TypeError, ValueError, IndexError, KeyError, AttributeError):
            return "The weekly schedule stored for this campaign cannot be read."
        return ""

    @property
    def schedule_rows(self) -> list[tuple[str, tuple[time, time] | None]]:
        """Every weekday with its hours, or None when Closed — for display."""
        days = self.open_days
        return [(name, days.get(index)) for index, name in enumerate(WEEKDAYS)]

    @property
    def weekly_hours(self) -> "WeeklyHours":
        """The schedule in the form delivery.windows reads."""
        return weekly_hours(self.schedule)

    @property
    def holds_channel(self) -> bool:
        return self.status in (Status.IN_PROGRESS, Status.PAUSED)

    @property
    def is_ready(self) -> bool:
        return bool(self.sender_id and self.template_id and self.schedule)


_PAST = {
    "edit": "edited",
    "delete": "deleted",
    "add list": "given new recipient lists",
    "run": "run",
    "schedule": "scheduled",
    "unschedule": "unscheduled",
    "pause": "paused",
    "resume": "resumed",
    "stop": "stopped",
    "retry": "retried",
    "reconcile": "checked with the provider",
    "retry unconfirmed": "retried (unconfirmed messages)",
}


class ActivityEntry(models.Model):
    """One line of an organization's activity history: who did what to which campaign, when."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="activity")
    # Kept when the campaign is deleted, so the history still says what was deleted.
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="activity"
    )
    subject = models.CharField(max_length=255, help_text="What was acted on, as it was named.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    verb = models.CharField(max_length=40)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "activity entries"

    def __str__(self) -> str:
        who = self.actor.get_username() if self.actor else "Outreach"
        return f"{who} {self.verb} {self.subject}"
