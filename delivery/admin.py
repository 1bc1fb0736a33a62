from django.contrib import admin

from campaigns.admin import ViewOnlyAdmin
from delivery.models import Message


@admin.register(Message)
class MessageAdmin(ViewOnlyAdmin):
    # A message changes only by being sent, by its provider's callbacks and by the console's
    # Retry; its history is the campaign's record, so nothing here edits or deletes it.
    list_display = ["address", "campaign", "status", "provider_id", "error_code", "sent_at"]
    list_filter = ["status", "org"]
    search_fields = ["address", "provider_id", "name"]
    raw_id_fields = ["campaign", "recipient_list", "contact"]
    # Opening a campaign's million messages in a changelist must not count them all.
    show_full_result_count = False
