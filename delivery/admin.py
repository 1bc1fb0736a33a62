from django.contrib import admin

from delivery.models import Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["address", "campaign", "status", "provider_id", "error_code", "sent_at"]
    list_filter = ["status", "org"]
    search_fields = ["address", "provider_id", "name"]
    raw_id_fields = ["campaign", "recipient_list", "contact"]
    # Opening a campaign's million messages in a changelist must not count them all.
    show_full_result_count = False
