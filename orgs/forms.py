from django import forms

from orgs.models import Organization, timezone_names


class OrganizationSettingsForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = ["name", "timezone", "default_region", "max_recipients_per_list", "quiet_hours"]
        widgets = {"timezone": forms.TextInput(attrs={"list": "timezone-names"})}

    timezone_choices = sorted(timezone_names())
