from datetime import datetime

from django import forms
from django.utils import timezone

from orgs.models import Organization
from orgs.parsing import OUT_OF_RANGE, local_instant


class LocalDateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self) -> None:
        super().__init__(format="%Y-%m-%dT%H:%M")


class RecipientListForm(forms.Form):
    """An upload with its outreach start and optional end, typed in the organization's timezone."""

    file = forms.FileField(label="CSV file")
    start_at = forms.DateTimeField(label="Outreach starts", widget=LocalDateTimeInput())
    has_end = forms.BooleanField(
        label="Should outreach end on a certain date/time?",
        required=False,
        widget=forms.CheckboxInput(attrs={"data-reveals": "#end-at-field"}),
    )
    end_at = forms.DateTimeField(label="Outreach ends", required=False, widget=LocalDateTimeInput())

    def __init__(self, *args: object, org: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.org = org
        now = timezone.localtime(timezone.now(), org.tz).replace(second=0, microsecond=0)
        self.fields["start_at"].initial = now.replace(tzinfo=None)
        tz_help = f"In {org.timezone} (the organization's timezone)."
        self.fields["start_at"].help_text = tz_help + " Now, or any later date."
        self.fields["end_at"].help_text = tz_help + " Unsent messages are not sent after it."

    def _aware(self, field: str, value: datetime | None) -> datetime | None:
        # The browser sends a wall-clock time; it means the organization's local time.
        if value is None:
            return None
        instant = local_instant(value, self.org.tz)
        if instant is None:
            self.add_error(field, OUT_OF_RANGE)
        return instant

    def clean(self) -> dict:
        data = super().clean()
        data["start_at"] = self._aware("start_at", data.get("start_at"))
        if not data.get("has_end"):
            data["end_at"] = None
            return data
        data["end_at"] = self._aware("end_at", data.get("end_at"))
        if self.has_error("end_at"):
            return data
        if data["end_at"] is None:
            self.add_error("end_at", "Give the end date and time, or untick the box.")
        elif data.get("start_at") and data["end_at"] <= data["start_at"]:
            self.add_error("end_at", "The end must be after the start.")
        elif data["end_at"] <= timezone.now():
            self.add_error("end_at", "The end is already in the past.")
        return data
