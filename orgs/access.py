"""The one tenancy path: view decorators for roles and the org-scoped object lookup.

Every console view is wrapped in `member_required` (any role may look) or `admin_required`
(Administrators only: Viewers get 403). Objects are always fetched with `get_for_org`, so an id
from another organization is a 404. Each decorator records its access level on the view so the
security tests can walk every URL and check it.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

M = TypeVar("M", bound=Model)
View = Callable[..., HttpResponse]


def _org_view(view: View, *, admin: bool) -> View:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if request.org is None:
            return render(request, "orgs/no_membership.html", status=403)
        if admin and not request.membership.is_admin:
            raise PermissionDenied("Only Administrators can do this.")
        return view(request, *args, **kwargs)

    wrapper.access = "admin" if admin else "member"
    return wrapper


def member_required(view: View) -> View:
    """Any member of the current organization (Administrator or Viewer) may use the view."""
    return _org_view(view, admin=False)


def admin_required(view: View) -> View:
    """Only an Administrator of the current organization may use the view."""
    return _org_view(view, admin=True)


def public(view: View) -> View:
    """Marks a deliberately public endpoint (webhooks, unsubscribe) for the URL walker."""
    view.access = "public"
    return view


def get_for_org(request: HttpRequest, model_or_queryset: type[M] | QuerySet[M], **lookup: Any) -> M:
    """The object of the current organization matching the lookup, or 404."""
    queryset = (
        model_or_queryset
        if isinstance(model_or_queryset, QuerySet)
        else model_or_queryset._default_manager.all()
    )
    return get_object_or_404(queryset, org=request.org, **lookup)
