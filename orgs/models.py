"""Tenancy: organizations, and the memberships that give users a role in them."""

import zoneinfo
from functools import cache

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

DEFAULT_MAX_RECIPIENTS_PER_LIST = 3500


@cache
def timezone_names() -> frozenset[str]:
    """Every IANA timezone name the tz database (tzdata) knows."""
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value: str) -> None:
    if value not in timezone_names():
        raise ValidationError(f"“{value}” is not an IANA timezone name such as America/New_York.")


def validate_region(value: str) -> None:
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationError(f"“{value}” is not a two-letter country code such as US or GB.")


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    timezone = models.CharField(
        max_length=64,
        default="America/New_York",
        validators=[validate_timezone],
        help_text="Used for recipients without a timezone and for dates administrators type.",
    )
    default_region = models.CharField(
        max_length=2,
        default="US",
        validators=[validate_region],
        help_text="Country assumed for phone numbers written without a country code.",
    )
    max_recipients_per_list = models.PositiveIntegerField(
        default=DEFAULT_MAX_RECIPIENTS_PER_LIST,
        validators=[MinValueValidator(1)],
        help_text="Largest number of recipients one uploaded list may hold.",
    )
    quiet_hours = models.BooleanField(
        "legal quiet hours",
        default=True,
        help_text="Never text US numbers before 8:00 or after 21:00 in the recipient's local time "
        "(8:00 to 20:00 for Florida and Oklahoma numbers), nor Canadian numbers outside 9:00 to "
        "21:30 on weekdays and 10:00 to 18:00 at weekends, whatever the campaign's schedule says.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class Role(models.TextChoices):
    ADMIN = "admin", "Administrator"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "org"], name="one_membership_per_user_and_org")
        ]
        ordering = ["org__name"]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} of {self.org}"

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN
