"""The Django admin site, with the one repair its hostile-input walk needed."""

from collections.abc import Callable
from functools import wraps

from django.contrib import admin
from django.contrib.admin.options import TO_FIELD_VAR
from django.http import HttpRequest, HttpResponse


class OutreachAdminSite(admin.AdminSite):
    site_header = "Outreach operations"
    site_title = "Outreach operations"

    def admin_view(self, view: Callable, cacheable: bool = False) -> Callable:
        """Every admin view, with an empty `_to_field` dropped first.

        Django looks up a field named "" for an empty `_to_field` (query or form) and answers 500
        on every change and delete page (its check lets an empty value through); without the
        parameter it is fine.
        """
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            for name in ("GET", "POST"):
                values = getattr(request, name)
                if values.get(TO_FIELD_VAR) == "":
                    values = values.copy()
                    del values[TO_FIELD_VAR]
                    setattr(request, name, values)
            return inner(request, *args, **kwargs)

        return wrapper
