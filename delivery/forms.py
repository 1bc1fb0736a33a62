import csv
import io

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from campaigns.models import normalise_phone
from orgs.models import Organization

MAX_OPT_OUT_FILE_BYTES = 5 * 1024 * 1024


def normalise_address(raw: str, region: str) -> str:
    """A phone number in E.164 or a lower-cased email address; ValidationError otherwise."""
    value = raw.strip()
    if "@" in value:
        validate_email(value)
        return value.lower()
    return normalise_phone(value, region)


class SuppressionForm(forms.Form):
    address = forms.CharField(
        label="Phone number or email", max_length=254, help_text="This address gets nothing more."
    )
    detail = forms.CharField(label="Note", max_length=255, required=False)

    def __init__(self, *args: object, org: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.org = org

    def clean_address(self) -> str:
        try:
            return normalise_address(self.cleaned_data["address"], self.org.default_region)
        except ValidationError:
            raise ValidationError(
                "Give a phone number (with its country code, or a number of your default "
                "region) or an email address."
            ) from None


class SuppressionImportForm(forms.Form):
    file = forms.FileField(
        label="CSV of opt-outs",
        help_text="One phone number or email per row, in the first column (a header is fine).",
    )

    def __init__(self, *args: object, org: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.org = org

    def clean_file(self) -> list[str]:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_OPT_OUT_FILE_BYTES:
            raise ValidationError("The file is over 5 MB; split it into smaller files.")
        try:
            text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationError(
                'The file is not UTF-8 text. In Excel choose "CSV UTF-8 (Comma delimited)".'
            ) from None
        addresses, bad = [], []
        for line, row in enumerate(csv.reader(io.StringIO(text)), 1):
            if not row or not row[0].strip():
                continue
            try:
                addresses.append(normalise_address(row[0], self.org.default_region))
            except ValidationError:
                if line > 1:  # the first row may be a header
                    bad.append(f"line {line}: {row[0][:60]}")
        if bad:
            shown = "; ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            raise ValidationError(
                f"Nothing was imported: {len(bad)} rows are not addresses ({shown})."
            )
        if not addresses:
            raise ValidationError("The file has no phone numbers or email addresses.")
        return addresses
