"""Who campaigns reach: an organization's contacts and the recipient lists of campaigns."""

from django.conf import settings
from django.db import models
from django.utils.timezone import now

from campaigns.models import Campaign
from orgs.models import Organization
from orgs.parsing import EARLIEST, LATEST, OUT_OF_RANGE


class Contact(models.Model):
    """A person of the organization, keyed by normalised phone (E.164) or email address."""

    # The unique (org, address) constraint below indexes org; an import creates a contact per
    # new address, and the database checking the organization again for each cost as much as
    # storing it (the import sets org from the list's own organization).
    org = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="contacts",
        db_index=False,
        db_constraint=False,
    )
    address = models.CharField(max_length=254)
    name = models.CharField(max_length=200, blank=True)
    timezone = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "address"], name="one_contact_per_address")
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address

    @property
    def is_phone(self) -> bool:
        return self.address.startswith("+")


class ListStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    IN_PROGRESS = "in_progress", "In Progress"
    COMPLETED = "completed", "Completed"
    STOPPED = "stopped", "Stopped"


class RecipientList(models.Model):
    """One uploaded CSV file ("an outreach") with its own start and optional end."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipient_lists")
    file_name = models.CharField(max_length=255)
    status = models.CharField(
        max_length=12, choices=ListStatus.choices, default=ListStatus.SCHEDULED
    )
    start_at = models.DateTimeField(help_text="Stored in UTC.")
    end_at = models.DateTimeField(null=True, blank=True, help_text="Stored in UTC.")
    recipient_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    suppressed_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=now)
    stopped_at = models.DateTimeField(null=True, blank=True)
    # Set by a dispatcher tick that failed for this list, cleared by the next one that works
    # (delivery/dispatch.py): what went wrong, for operators, and since when.
    error = models.CharField(max_length=500, blank=True)
    error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["campaign", "status"])]
        constraints = [
            # Instants every page, tick and the database driver can read (see the campaign's
            # run_at): year 10000 in UTC is stored by PostgreSQL, never read back by psycopg.
            models.CheckConstraint(
                condition=models.Q(start_at__gte=EARLIEST, start_at__lt=LATEST),
                name="recipient_list_start_in_range",
                violation_error_message=OUT_OF_RANGE,
            ),
            models.CheckConstraint(
                condition=models.Q(end_at__gte=EARLIEST, end_at__lt=LATEST)
                | models.Q(end_at__isnull=True),
                name="recipient_list_end_in_range",
                violation_error_message=OUT_OF_RANGE,
            ),
        ]

    def __str__(self) -> str:
        return self.file_name

    @property
    def can_stop(self) -> bool:
        return self.status in (ListStatus.SCHEDULED, ListStatus.IN_PROGRESS)

    @property
    def stopped_by_error(self) -> bool:
        """Whether the dispatcher's last tick failed for this list (see `error`)."""
        return self.error_at is not None and self.can_stop


def error_log_path(instance: "RejectedUpload", filename: str) -> str:
    return f"error-logs/{instance.org_id}/{filename}"


class RejectedUpload(models.Model):
    """An upload refused whole, kept so that its error log can be downloaded."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    # None for an opt-out file: those go to the organization's suppression list, not a campaign.
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="rejected_uploads"
    )
    file_name = models.CharField(max_length=255)
    # {"error kind label": count, …} in the order the page shows them.
    summary = models.JSONField(default=dict)
    error_count = models.PositiveIntegerField(default=0)
    # What is wrong with the file as a whole (size, encoding, limit): shown on the page itself.
    file_errors = models.JSONField(default=list, blank=True)
    error_log = models.FileField(upload_to=error_log_path)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.error_count} errors)"
