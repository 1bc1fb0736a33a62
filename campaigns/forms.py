"""Forms for senders, message templates and campaigns; every form is scoped to one organization."""

from datetime import datetime, time
from pathlib import PurePath

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone
from django.utils.html import format_html

from campaigns.email_html import sanitize_email_html
from campaigns.models import (
    DEFAULT_RATE,
    LANGUAGES,
    WEEKDAYS,
    Campaign,
    Channel,
    MessageTemplate,
    Sender,
)
from campaigns.rendering import (
    UNSUBSCRIBE_VARIABLE,
    TemplateSyntaxError,
    parse_template,
    unsubscribe_link_problem,
)
from delivery.providers import get_sms_provider
from orgs.models import Organization
from orgs.parsing import OUT_OF_RANGE, local_instant

# ---------------------------------------------------------------- senders


class SenderForm(forms.ModelForm):
    channel: Channel

    def __init__(self, *args: object, org: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # The server decides organization and channel, never the POST data.
        self.instance.org = org
        self.instance.channel = self.channel
        if not self.instance.pk:
            self.initial.setdefault("rate_limit", DEFAULT_RATE[self.channel][0])
            self.initial.setdefault("rate_period", DEFAULT_RATE[self.channel][1])


class SmsSenderForm(SenderForm):
    channel = Channel.SMS

    class Meta:
        model = Sender
        fields = [
            "label",
            "phone_number",
            "messaging_service_sid",
            "inbox_name",
            "rate_limit",
            "rate_period",
        ]
        help_texts = {
            "phone_number": "An SMS-capable number, e.g. +1 212 555 0123 (stored as +12125550123).",
            "messaging_service_sid": "Optional: a Twilio Messaging Service to send through "
            "instead of the number.",
            "rate_limit": "A US long code sends about 1 message per second; toll-free and short "
            "codes more. Sending never exceeds this.",
        }

    def _post_clean(self) -> None:
        # After the model's own validation, so that only a well-formed number not held by
        # another organization is put to Twilio.
        super()._post_clean()
        identity = ("phone_number", "messaging_service_sid")
        if settings.DELIVERY_BACKEND != "live" or self.errors:
            return
        # Compared as stored (E.164), not as typed: "(415) 555-0100" for +14155550100 is no change.
        if self.instance.pk and all(
            getattr(self.instance, field) == self.initial.get(field) for field in identity
        ):
            return
        problem = get_sms_provider().sender_problem(
            phone_number=self.instance.phone_number,
            messaging_service_sid=self.instance.messaging_service_sid,
        )
        if problem:
            self.add_error(None, problem)


class EmailSenderForm(SenderForm):
    channel = Channel.EMAIL

    class Meta:
        model = Sender
        fields = ["label", "from_name", "from_email", "reply_to", "rate_limit", "rate_period"]
        help_texts = {"rate_limit": "Sending never exceeds this."}


def sender_form_class(channel: str) -> type[SenderForm]:
    return SmsSenderForm if channel == Channel.SMS else EmailSenderForm


# ---------------------------------------------------------------- message templates


def _check_variables(form: forms.Form, field: str, label: str) -> None:
    """Adds a form error pointing at the spot when the field's variables cannot be parsed."""
    try:
        parse_template(form.cleaned_data.get(field) or "")
    except TemplateSyntaxError as exc:
        form.add_error(field, f"{label}: {exc.message}")


class SmsTemplateForm(forms.ModelForm):
    class Meta:
        model = MessageTemplate
        fields = ["name", "language", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 6})}
        help_texts = {
            "body": "Use {{ first_name }}, {{ name }} or any CSV column, with an optional default: "
            "{{ first_name|there }}."
        }

    def __init__(self, *args: object, org: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.instance.org = org
        self.instance.channel = Channel.SMS
        self.fields["body"].required = True

    def clean(self) -> dict:
        data = super().clean()
        _check_variables(self, "body", "Message")
        return data


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data: object, initial: object = None) -> list[UploadedFile]:
        if not data:
            return []
        files = data if isinstance(data, list | tuple) else [data]
        return [super(MultipleFileField, self).clean(f, initial) for f in files]

    def has_changed(self, initial: object, data: object) -> bool:
        return bool(data)  # choosing no file changes nothing


# Attachment types we accept, with the bytes each must start with (checked, not trusted).
ATTACHMENT_TYPES: dict[str, tuple[str, tuple[bytes, ...]]] = {
    ".pdf": ("application/pdf", (b"%PDF-",)),
    ".png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    ".jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
    ".jpeg": ("image/jpeg", (b"\xff\xd8\xff",)),
    ".gif": ("image/gif", (b"GIF87a", b"GIF89a")),
    ".txt": ("text/plain", ()),
    ".csv": ("text/csv", ()),
    ".ics": ("text/calendar", (b"BEGIN:VCALENDAR",)),
}
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024
MAX_ATTACHMENTS_TOTAL_BYTES = 10 * 1024 * 1024
MAX_ATTACHMENTS = 5


def check_attachment(upload: UploadedFile) -> str | None:
    """Why this file cannot be attached, or None when it can."""
    suffix = PurePath(upload.name).suffix.lower()
    if suffix not in ATTACHMENT_TYPES:
        allowed = ", ".join(sorted(ATTACHMENT_TYPES))
        return f"{upload.name}: this type of file cannot be attached (allowed: {allowed})."
    if upload.size > MAX_ATTACHMENT_BYTES:
        return f"{upload.name} is {upload.size / 1048576:.1f} MB; attachments can be 5 MB at most."
    content_type, signatures = ATTACHMENT_TYPES[suffix]
    head = upload.read(2048)
    upload.seek(0)
    if signatures and not head.startswith(signatures):
        return f"{upload.name} is not really a {suffix} file."
    if not signatures and b"\x00" in head:
        return f"{upload.name} is not a text file."
    upload.content_type = content_type
    return None


class EmailTemplateForm(forms.ModelForm):
    new_attachments = MultipleFileField(
        label="Attachments",
        required=False,
        help_text="PDF, images, text, CSV or calendar files; up to 5 files, 5 MB each, "
        "10 MB in all.",
    )
    remove_attachments = forms.ModelMultipleChoiceField(
        queryset=None, required=False, widget=forms.CheckboxSelectMultiple, label="Remove"
    )

    class Meta:
        model = MessageTemplate
        fields = ["name", "language", "subject", "html_body", "text_is_custom", "text_body"]
        widgets = {
            "html_body": forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}),
            "text_body": forms.Textarea(attrs={"rows": 8}),
        }
        help_texts = {
            # Escaped once here, so that pages which escape help texts and the admin, which
            # does not, both show the link as text.
            "html_body": format_html(
                "Scripts, event handlers and unsafe links are removed on save. Must show the "
                "unsubscribe link, visibly: {}.",
                '<a href="{{ unsubscribe_url }}">Unsubscribe</a>',
            ),
            "text_body": "Derived from the HTML on save unless you tick the box above.",
        }

    def __init__(self, *args: object, org: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.instance.org = org
        self.instance.channel = Channel.EMAIL
        self.fields["subject"].required = True
        self.fields["html_body"].required = True
        self.fields["remove_attachments"].queryset = (
            self.instance.attachments.all() if self.instance.pk else MessageTemplate.objects.none()
        )

    def clean(self) -> dict:
        data = super().clean()
        _check_variables(self, "subject", "Subject")
        _check_variables(self, "html_body", "HTML body")
        placeholder = "{{ " + UNSUBSCRIBE_VARIABLE + " }}"
        html = data.get("html_body") or ""
        if html and not self.has_error("html_body"):
            # Judged on what is stored and sent: sanitising drops comments, and what is left
            # must show the link. A derived text part then carries it too (links are written out).
            problem = unsubscribe_link_problem(sanitize_email_html(html))
            if problem:
                self.add_error("html_body", problem)
        if data.get("text_is_custom"):
            _check_variables(self, "text_body", "Plain-text part")
            text = data.get("text_body") or ""
            if not _uses_unsubscribe(text):
                self.add_error(
                    "text_body",
                    f"Add {placeholder} to the plain-text part too (or untick the box).",
                )
        self._clean_attachments(data)
        return data

    def _clean_attachments(self, data: dict) -> None:
        uploads = data.get("new_attachments") or []
        removed = {a.pk for a in data.get("remove_attachments") or []}
        kept = [a for a in self.fields["remove_attachments"].queryset if a.pk not in removed]
        for upload in uploads:
            problem = check_attachment(upload)
            if problem:
                self.add_error("new_attachments", problem)
        if len(kept) + len(uploads) > MAX_ATTACHMENTS:
            self.add_error("new_attachments", f"At most {MAX_ATTACHMENTS} attachments.")
        total = sum(a.size for a in kept) + sum(u.size for u in uploads)
        if total > MAX_ATTACHMENTS_TOTAL_BYTES:
            self.add_error(
                "new_attachments",
                f"The attachments add up to {total / 1048576:.1f} MB; the limit is 10 MB.",
            )


def _uses_unsubscribe(text: str) -> bool:
    try:
        return UNSUBSCRIBE_VARIABLE in parse_template(text).variables
    except TemplateSyntaxError:
        return True  # the syntax error is reported on its own


def template_form_class(channel: str) -> type[forms.ModelForm]:
    return SmsTemplateForm if channel == Channel.SMS else EmailTemplateForm


# ---------------------------------------------------------------- campaigns and schedules

SCHEDULE_PRESETS = {"weekdays": {day: (time(9), time(17)) for day in range(5)}}


class TemplateSelect(forms.Select):
    """A template dropdown whose options carry their language, so the page can filter them."""

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        instance = getattr(value, "instance", None)
        if instance is not None:
            option["attrs"]["data-language"] = instance.language
        return option


class CampaignForm(forms.ModelForm):
    """A campaign's settings and its weekly schedule (one row per weekday, Closed by default)."""

    class Meta:
        model = Campaign
        fields = ["name", "description", "sender", "language", "template"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3}), "template": TemplateSelect}

    def __init__(self, *args: object, org: Organization, channel: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.instance.org = org
        self.instance.channel = channel
        self.fields["sender"].queryset = Sender.objects.filter(org=org, channel=channel)
        self.fields["template"].queryset = MessageTemplate.objects.filter(org=org, channel=channel)
        self.fields["language"].choices = LANGUAGES
        self.fields["sender"].help_text = "Only senders of this channel are offered."
        self.fields["template"].help_text = "Only templates of this channel and language."
        open_days = self.instance.open_days if self.instance.pk else {}
        for index, day in enumerate(WEEKDAYS):
            hours = open_days.get(index)
            self.fields[f"day{index}_closed"] = forms.BooleanField(
                label=f"{day} closed", required=False, initial=hours is None
            )
            self.fields[f"day{index}_open"] = forms.TimeField(
                label=f"{day} opens", required=False, initial=hours[0] if hours else time(9),
                widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            )  # fmt: skip
            self.fields[f"day{index}_close"] = forms.TimeField(
                label=f"{day} closes", required=False, initial=hours[1] if hours else time(17),
                widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            )  # fmt: skip

    @property
    def schedule_rows(
        self,
    ) -> list[tuple[str, forms.BoundField, forms.BoundField, forms.BoundField]]:
        return [
            (day, self[f"day{i}_closed"], self[f"day{i}_open"], self[f"day{i}_close"])
            for i, day in enumerate(WEEKDAYS)
        ]

    def clean(self) -> dict:
        data = super().clean()
        template, language = data.get("template"), data.get("language")
        if template and language and template.language != language:
            self.add_error(
                "template",
                f"“{template.name}” is written in {template.get_language_display()}; pick a "
                f"template in {dict(LANGUAGES)[language]} or change the language.",
            )
        schedule = {}
        for index, day in enumerate(WEEKDAYS):
            if data.get(f"day{index}_closed"):
                continue
            opens, closes = data.get(f"day{index}_open"), data.get(f"day{index}_close")
            if opens is None or closes is None:
                self.add_error(
                    f"day{index}_open", f"{day}: give an open and a close time, or tick Closed."
                )
            elif closes <= opens:
                self.add_error(
                    f"day{index}_close", f"{day}: the close time must be after the open time."
                )
            else:
                schedule[str(index)] = [opens.strftime("%H:%M"), closes.strftime("%H:%M")]
        if not schedule and not any(
            self.has_error(f"day{i}_{part}") for i in range(7) for part in ("open", "close")
        ):
            raise forms.ValidationError(
                "Open at least one day: with every day Closed the campaign would never send."
            )
        self.instance.schedule = schedule
        return data


def apply_schedule_preset(data: "forms.QueryDict", preset: str) -> dict:
    """The submitted form values with the named preset's hours filled into the schedule rows."""
    values = data.dict()
    hours = SCHEDULE_PRESETS[preset]
    for index in range(7):
        if index in hours:
            values[f"day{index}_closed"] = False
            values[f"day{index}_open"] = hours[index][0].strftime("%H:%M")
            values[f"day{index}_close"] = hours[index][1].strftime("%H:%M")
        else:
            values[f"day{index}_closed"] = True
    return values


class ScheduleRunForm(forms.Form):
    run_at = forms.DateTimeField(
        label="Run at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def __init__(self, *args: object, org: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.org = org
        self.fields["run_at"].help_text = (
            f"In {org.timezone}. If another campaign of this channel is still running then, this "
            "one waits and starts as soon as it finishes."
        )

    def clean_run_at(self) -> datetime:
        value = local_instant(self.cleaned_data["run_at"], self.org.tz)
        if value is None:
            raise forms.ValidationError(OUT_OF_RANGE)
        if value <= timezone.now():
            raise forms.ValidationError("Pick a time in the future, or use Run now.")
        return value
