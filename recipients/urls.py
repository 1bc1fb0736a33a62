from django.urls import path

from recipients import views

app_name = "recipients"

urlpatterns = [
    path("campaigns/<id:campaign_id>/lists/new/", views.list_upload, name="list_upload"),
    path(
        "campaigns/<id:campaign_id>/lists/template.csv",
        views.csv_template_download,
        name="csv_template",
    ),
    path("lists/<id:list_id>/", views.list_detail, name="list_detail"),
    path("lists/<id:list_id>/stop/", views.list_stop, name="list_stop"),
    path("rejected-uploads/<id:rejected_id>/", views.rejected_detail, name="rejected_detail"),
    path(
        "rejected-uploads/<id:rejected_id>/error-log.csv",
        views.error_log_download,
        name="error_log",
    ),
]
