from django.contrib import admin
from django.urls import include, path

from orgs.access import public
from orgs.login_throttle import ThrottledLoginView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", public(ThrottledLoginView.as_view()), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("orgs.urls")),
    path("", include("campaigns.urls")),
    path("", include("recipients.urls")),
    path("", include("delivery.urls")),
]

admin.site.site_header = "Outreach operations"
admin.site.site_title = "Outreach operations"
