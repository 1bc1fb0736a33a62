from django.contrib import admin

from campaigns.models import ActivityEntry, Campaign, MessageTemplate, Sender, TemplateAttachment


@admin.register(Sender)
class SenderAdmin(admin.ModelAdmin):
    list_display = ["label", "org", "channel", "address", "rate_limit", "rate_period"]
    list_filter = ["channel", "org"]
    search_fields = ["label", "phone_number", "from_email", "org__name"]
    # Moving a sender to another organization or channel would break its campaigns.
    readonly_fields = ["org", "channel", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False  # senders are created in the console, where the organization is known


class AttachmentInline(admin.TabularInline):
    model = TemplateAttachment
    extra = 0
    readonly_fields = ["filename", "content_type", "size"]


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "org", "channel", "language", "updated_at"]
    list_filter = ["channel", "language", "org"]
    search_fields = ["name", "subject", "org__name"]
    readonly_fields = ["org", "channel", "created_at", "updated_at"]
    inlines = [AttachmentInline]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "org", "channel", "status", "created_at", "last_activity_at"]
    list_filter = ["status", "channel", "org"]
    search_fields = ["name", "org__name"]
    date_hierarchy = "created_at"
    # Status, channel and the sending identity are driven by the engine, never edited by hand.
    readonly_fields = [
        "org",
        "channel",
        "status",
        "sender",
        "template",
        "created_by",
        "created_at",
        "last_activity_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ActivityEntry)
class ActivityEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "org", "actor", "verb", "subject", "campaign"]
    list_filter = ["verb", "org"]
    search_fields = ["subject", "detail", "actor__username"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # the history is a record, not a document
