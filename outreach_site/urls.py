from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Log-in (console and admin alike) is throttled by django-axes in its backend and middleware.
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("orgs.urls")),
    path("", include("campaigns.urls")),
    path("", include("recipients.urls")),
    path("", include("delivery.urls")),
]

admin.site.site_header = "Outreach operations"
admin.site.site_title = "Outreach operations"
