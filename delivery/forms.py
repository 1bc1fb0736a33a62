from django import forms
from django.core.exceptions import ValidationError

from orgs.models import Organization
from recipients.csv_reader import MAX_FILE_BYTES, ErrorKind, normalise_address


class SuppressionForm(forms.Form):
    address = forms.CharField(
        label="Phone number or email",
        # Only a bound on the input: the normaliser says what is wrong with a long address.
        max_length=1000,
        help_text="This address gets nothing more.",
    )
    detail = forms.CharField(label="Note", max_length=255, required=False)

    def __init__(self, *args: object, org: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.org = org

    def clean_address(self) -> str:
        try:
            return normalise_address(self.cleaned_data["address"], self.org.default_region)
        except ValidationError as error:
            if error.code == ErrorKind.INVALID_EMAIL:
                raise
            raise ValidationError(
                "Give a phone number (with its country code, or a number of your default "
                "region) or an email address."
            ) from None


class SuppressionImportForm(forms.Form):
    """The opt-out file; `suppressions_import` reads and checks it, a row at a time."""

    file = forms.FileField(label="CSV of opt-outs")

    def __init__(self, *args: object, org: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.org = org
        self.fields["file"].help_text = (
            "Phone numbers and emails in a column named phone_number, email or address (or in "
            f"column A, without a header). Numbers without a country code are read as "
            f"{org.default_region} numbers. At most {MAX_FILE_BYTES // (1024 * 1024)} MB."
        )
