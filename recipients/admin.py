from django.contrib import admin

from campaigns.admin import HistoryAdmin, ViewOnlyAdmin
from recipients.models import Contact, RecipientList, RejectedUpload


@admin.register(Contact)
class ContactAdmin(HistoryAdmin):
    list_display = ["address", "name", "org", "timezone", "created_at"]
    list_filter = ["org"]
    search_fields = ["address", "name"]
    # The address is the contact's key in its organization; the timezone comes from uploads.
    readonly_fields = ["org", "address", "timezone", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False  # contacts come from uploads

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # their messages and replies hang on them; the console never deletes one


@admin.register(RecipientList)
class RecipientListAdmin(ViewOnlyAdmin):
    # Its messages were planned from its start and end at import; the console only stops it.
    list_display = ["file_name", "campaign", "status", "recipient_count", "start_at"]
    list_filter = ["status", "org"]
    search_fields = ["file_name", "campaign__name"]


@admin.register(RejectedUpload)
class RejectedUploadAdmin(ViewOnlyAdmin):
    list_display = ["file_name", "campaign", "error_count", "created_at"]
    list_filter = ["org"]
