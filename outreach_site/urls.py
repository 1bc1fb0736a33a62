from django.contrib import admin
from django.urls import include, path

from orgs.access import public
from orgs.password_reset import ThrottledPasswordResetView

urlpatterns = [
    path("admin/", admin.site.urls),
    # Before Django's own: the reset form is rate-limited and mails off the request path.
    path(
        "accounts/password_reset/",
        public(ThrottledPasswordResetView.as_view()),
        name="password_reset",
    ),
    # Log-in (console and admin alike) is throttled by django-axes in its backend and middleware.
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("orgs.urls")),
    path("", include("campaigns.urls")),
    path("", include("recipients.urls")),
    path("", include("delivery.urls")),
]
