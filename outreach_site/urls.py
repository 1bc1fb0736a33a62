from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("orgs.urls")),
]

admin.site.site_header = "Outreach operations"
admin.site.site_title = "Outreach operations"
