from django.http import HttpRequest

from orgs.models import Membership


def current_org(request: HttpRequest) -> dict:
    """The current organization, the user's role and the organizations they can switch to."""
    membership = getattr(request, "membership", None)
    if membership is None:
        return {}
    return {
        "org": membership.org,
        "membership": membership,
        "is_admin": membership.is_admin,
        "switchable_memberships": lambda: (
            Membership.objects.filter(user=request.user)
            .exclude(pk=membership.pk)
            .select_related("org")
        ),
    }
