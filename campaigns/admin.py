"""The Django admin: staff see everything but change only what the console could change, through
the console's forms and services, and each change lands in the organization's activity history.

The bases here serve every app's admin: `HistoryAdmin` for rows staff may edit, `ViewOnlyAdmin`
for rows only the engine writes.
"""

from collections.abc import Sequence

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models
from django.http import HttpRequest, HttpResponseRedirect

from campaigns import services
from campaigns.forms import CampaignForm, sender_form_class, template_form_class
from campaigns.models import ActionNotAllowed, ActivityEntry, Campaign, MessageTemplate, Sender
from orgs.models import Organization


def changed_labels(form: forms.BaseForm) -> list[str]:
    """The labels of the fields a form changed, as the console's history names them."""
    return [str(form.fields[name].label or name) for name in form.changed_data]


def admin_change_record(
    obj: models.Model, *, user: AbstractBaseUser, verb: str, changed: Sequence[str] = ()
) -> None:
    """Records a change made in the admin: "edited contact (admin)" by the staff user."""
    org = obj if isinstance(obj, Organization) else obj.org
    services.activity_record(
        org=org,
        actor=user,
        verb=f"{verb} {obj._meta.verbose_name}",
        subject=str(obj)[:255],
        campaign=getattr(obj, "campaign", None),
        detail=services.changes_detail(changed),
        via="admin",
    )


def bound_form(form_class: type[forms.ModelForm], **arguments: object) -> type[forms.ModelForm]:
    """form_class with these constructor arguments given: the admin builds its forms itself."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        form_class.__init__(self, *args, **arguments, **kwargs)

    return type(form_class.__name__, (form_class,), {"__init__": __init__})


class HistoryAdmin(admin.ModelAdmin):
    """An admin whose saves and deletes land in the activity history, one object at a time.

    Admins of rows the console edits override save_model and delete_model to call the console's
    service with via="admin", which records the same line."""

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        # A bulk delete would skip each object's own rules and its line in the history.
        actions.pop("delete_selected", None)
        return actions

    def save_model(
        self, request: HttpRequest, obj: models.Model, form: forms.ModelForm, change: bool
    ) -> None:
        obj.save()
        if change:
            admin_change_record(obj, user=request.user, verb="edited", changed=changed_labels(form))
        else:
            admin_change_record(obj, user=request.user, verb="added")

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        admin_change_record(obj, user=request.user, verb="deleted")
        obj.delete()


class ViewOnlyAdmin(admin.ModelAdmin):
    """An admin for rows only the engine writes: shown, never added, changed or deleted."""

    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


@admin.register(Sender)
class SenderAdmin(HistoryAdmin):
    list_display = ["label", "org", "channel", "address", "rate_limit", "rate_period"]
    list_filter = ["channel", "org"]
    search_fields = ["label", "phone_number", "from_email", "org__name"]
    # Moving a sender to another organization or channel would break its campaigns.
    readonly_fields = ["org", "channel", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # senders are created in the console, where the organization is known

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is not None:
            # The console's form, with whatever it checks (the number, who else holds it).
            kwargs["form"] = bound_form(sender_form_class(obj.channel), org=obj.org)
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request, obj, form, change) -> None:
        services.sender_save(
            sender=obj, user=request.user, changed=changed_labels(form), via="admin"
        )

    def delete_model(self, request, obj) -> None:
        services.sender_delete(sender=obj, user=request.user, via="admin")


@admin.register(MessageTemplate)
class MessageTemplateAdmin(HistoryAdmin):
    list_display = ["name", "org", "channel", "language", "updated_at"]
    list_filter = ["channel", "language", "org"]
    search_fields = ["name", "subject", "org__name"]
    readonly_fields = ["org", "channel", "created_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is not None:
            # The console's form: its syntax checks, attachment checks and unsubscribe rule.
            kwargs["form"] = bound_form(template_form_class(obj.channel), org=obj.org)
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request, obj, form, change) -> None:
        removed = form.cleaned_data.get("remove_attachments") or []
        services.template_save(
            template=obj,
            user=request.user,
            new_attachments=form.cleaned_data.get("new_attachments") or [],
            removed_attachment_ids=[a.pk for a in removed],
            changed=changed_labels(form),
            via="admin",
        )

    def delete_model(self, request, obj) -> None:
        services.template_delete(template=obj, user=request.user, via="admin")


SCHEDULE_FIELDS = [(f"day{i}_closed", f"day{i}_open", f"day{i}_close") for i in range(7)]
# The console's campaign form adds its schedule rows per instance (and still does); declared
# here as well, the admin can lay them out.
CampaignAdminForm = type(
    "CampaignAdminForm",
    (CampaignForm,),
    {name: forms.Field(required=False) for row in SCHEDULE_FIELDS for name in row},
)
# Driven by the engine (status, runs, counters) or fixed at creation (organization, channel).
CAMPAIGN_LIFECYCLE_FIELDS = [
    "org",
    "channel",
    "status",
    "run_at",
    "started_at",
    "finished_at",
    "opened_count",
    "clicked_count",
    "replied_count",
    "created_by",
    "created_at",
    "last_activity_at",
    "error",
    "error_at",
]


@admin.register(Campaign)
class CampaignAdmin(HistoryAdmin):
    list_display = ["name", "org", "channel", "status", "created_at", "last_activity_at"]
    list_filter = ["status", "channel", "org"]
    search_fields = ["name", "org__name"]
    date_hierarchy = "created_at"
    readonly_fields = [*CAMPAIGN_LIFECYCLE_FIELDS, "hours"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # The console's lifecycle (ALLOWED_ACTIONS): otherwise the page is view-only.
    def has_change_permission(self, request: HttpRequest, obj: Campaign | None = None) -> bool:
        return super().has_change_permission(request, obj) and (obj is None or obj.can("edit"))

    def has_delete_permission(self, request: HttpRequest, obj: Campaign | None = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or obj.can("delete"))

    def get_fieldsets(self, request, obj=None):
        editable = obj is not None and self.has_change_permission(request, obj)
        return [
            (None, {"fields": ["name", "description", "sender", "language", "template"]}),
            (
                "Weekly schedule, in each recipient's own timezone",
                {"fields": SCHEDULE_FIELDS if editable else ["hours"]},
            ),
            ("Lifecycle", {"fields": CAMPAIGN_LIFECYCLE_FIELDS}),
        ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is not None and self.has_change_permission(request, obj):
            kwargs["form"] = bound_form(CampaignAdminForm, org=obj.org, channel=obj.channel)
        return super().get_form(request, obj, change, **kwargs)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ActionNotAllowed as error:  # it started running while the form was open
            messages.error(request, str(error))
            return HttpResponseRedirect(request.path)

    def save_model(self, request, obj, form, change) -> None:
        services.campaign_update(
            campaign=obj, user=request.user, changed=changed_labels(form), via="admin"
        )

    def delete_model(self, request, obj) -> None:
        services.campaign_delete(campaign=obj, user=request.user, via="admin")

    @admin.display(description="Hours")
    def hours(self, obj: Campaign) -> str:
        days = [
            f"{day} {hours[0]:%H:%M}-{hours[1]:%H:%M}" for day, hours in obj.schedule_rows if hours
        ]
        return ", ".join(days) or "Closed every day"


@admin.register(ActivityEntry)
class ActivityEntryAdmin(ViewOnlyAdmin):
    # The history is a record, not a document.
    list_display = ["created_at", "org", "actor", "verb", "subject", "campaign"]
    list_filter = ["verb", "org"]
    search_fields = ["subject", "detail", "actor__username"]
    date_hierarchy = "created_at"
