from django.contrib import admin

# The activity history lives in campaigns; like the dashboard's selectors, the admin composes it.
from campaigns.admin import HistoryAdmin
from orgs.forms import OrganizationSettingsForm
from orgs.models import Membership, Organization


class MembershipInline(admin.TabularInline):
    # Shown here, changed on the membership's own page, where the change is recorded.
    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Organization)
class OrganizationAdmin(HistoryAdmin):
    form = OrganizationSettingsForm  # the console's settings form, plus the slug
    fields = [
        "name",
        "slug",
        "timezone",
        "default_region",
        "max_recipients_per_list",
        "quiet_hours",
        "created_at",
    ]
    readonly_fields = ["created_at"]
    list_display = ["name", "slug", "timezone", "default_region", "max_recipients_per_list"]
    list_filter = ["default_region"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def has_delete_permission(self, request, obj=None) -> bool:
        # Every campaign, message and the history itself would go with it.
        return False


@admin.register(Membership)
class MembershipAdmin(HistoryAdmin):
    list_display = ["user", "org", "role", "created_at"]
    list_filter = ["role", "org"]
    search_fields = ["user__username", "user__email", "org__name"]
    # Raw ids, not autocomplete: Django's autocomplete widget answers 500 for a value that is
    # not an id (`?user=x` on the add page), the raw-id widget shows it as not found.
    raw_id_fields = ["user", "org"]

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        # Once granted, a membership's user and organization stay; only the role changes.
        return ["user", "org", "created_at"] if obj else ["created_at"]
