"""Resolves the organization a signed-in user is working in, once per request."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from orgs.models import Membership

SESSION_ORG_KEY = "org_id"


def _current_membership(request: HttpRequest) -> Membership | None:
    if not request.user.is_authenticated:
        return None
    memberships = Membership.objects.filter(user=request.user).select_related("org")
    chosen = request.session.get(SESSION_ORG_KEY)
    if chosen is not None:
        membership = memberships.filter(org_id=chosen).first()
        if membership:
            return membership
    # No choice yet, or the chosen membership was revoked: fall back to the first by name.
    return memberships.order_by("org__name").first()


class OrgMiddleware:
    """Sets request.membership and request.org (None for anonymous users and outsiders), and
    makes the organization's timezone the current one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        membership = _current_membership(request)
        request.membership = membership
        request.org = membership.org if membership else None
        # Pages show times on the organization's clock, the one its administrators type dates in.
        if request.org is not None:
            timezone.activate(request.org.tz)
        else:
            timezone.deactivate()
        return self.get_response(request)
