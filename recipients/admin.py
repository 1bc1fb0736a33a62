from django.contrib import admin

from recipients.models import Contact, RecipientList, RejectedUpload


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["address", "name", "org", "timezone", "created_at"]
    list_filter = ["org"]
    search_fields = ["address", "name"]


@admin.register(RecipientList)
class RecipientListAdmin(admin.ModelAdmin):
    list_display = ["file_name", "campaign", "status", "recipient_count", "start_at"]
    list_filter = ["status", "org"]
    search_fields = ["file_name", "campaign__name"]
    raw_id_fields = ["campaign", "created_by"]


@admin.register(RejectedUpload)
class RejectedUploadAdmin(admin.ModelAdmin):
    list_display = ["file_name", "campaign", "error_count", "created_at"]
    list_filter = ["org"]
    raw_id_fields = ["campaign", "created_by"]
