from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from delivery.selectors import organization_overview
from orgs.access import admin_required, member_required
from orgs.forms import OrganizationSettingsForm
from orgs.middleware import SESSION_ORG_KEY
from orgs.models import Membership
from orgs.parsing import parse_id


@member_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "orgs/dashboard.html", organization_overview(org=request.org))


@member_required
@require_POST
def switch_org(request: HttpRequest) -> HttpResponse:
    # Only organizations the user belongs to can be chosen; anything else is a 404.
    org_id = parse_id(request.POST.get("org"))
    if org_id is None:
        raise Http404("No such organization.")
    membership = get_object_or_404(Membership, user=request.user, org_id=org_id)
    request.session[SESSION_ORG_KEY] = membership.org_id
    messages.success(request, f"You are now working in {membership.org.name}.")
    return redirect("dashboard")


@member_required
def org_settings(request: HttpRequest) -> HttpResponse:
    members = Membership.objects.filter(org=request.org).select_related("user")
    return render(request, "orgs/settings.html", {"members": members})


@admin_required
def org_settings_edit(request: HttpRequest) -> HttpResponse:
    form = OrganizationSettingsForm(request.POST or None, instance=request.org)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Organization settings saved.")
        return redirect("org_settings")
    return render(request, "orgs/settings_edit.html", {"form": form})
