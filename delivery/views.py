from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.timezone import now
from django.views.decorators.csrf import csrf_exempt
from django_htmx.http import HttpResponseClientRefresh

from campaigns.models import Campaign, Channel, Status
from campaigns.services import RETRYABLE_ONE_BY_ONE, channel_holder
from delivery import analytics, windows
from delivery.exports import (
    CAMPAIGN_HEADER,
    MESSAGE_HEADER,
    campaign_rows,
    csv_lines,
    message_rows,
)
from delivery.forms import SuppressionForm, SuppressionImportForm
from delivery.links import unsubscribe_message_id
from delivery.models import (
    NOT_SENT_STATUSES,
    Message,
    MessageStatus,
    Suppression,
    SuppressionReason,
)
from delivery.selectors import (
    campaign_messages,
    campaigns_progress,
    contact_timeline,
    contacts_search,
    keyset_page,
    send_plan,
    status_counts,
    suppressions_search,
)
from delivery.services import suppression_add, suppression_remove
from orgs.access import admin_required, get_for_org, member_required, public
from recipients.models import Contact, ListStatus
from recipients.services import suppressions_import

PAGE_SIZE = 50


@member_required
def contact_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    page = Paginator(contacts_search(org=request.org, query=query), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {"page": page, "query": query, "filters": {"q": query}}
    return render(request, "delivery/contact_list.html", context)


@member_required
def contact_timeline_page(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_for_org(request, Contact, pk=contact_id)
    context = {
        "contact": contact,
        "timeline": contact_timeline(contact=contact),
        "suppression": Suppression.objects.filter(org=request.org, address=contact.address).first(),
    }
    return render(request, "delivery/contact_timeline.html", context)


@member_required
def suppression_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    page = Paginator(suppressions_search(org=request.org, query=query), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {
        "page": page,
        "query": query,
        "filters": {"q": query},
        "form": SuppressionForm(org=request.org),
        "import_form": SuppressionImportForm(org=request.org),
    }
    return render(request, "delivery/suppression_list.html", context)


@admin_required
def suppression_create(request: HttpRequest) -> HttpResponse:
    form = SuppressionForm(request.POST or None, org=request.org)
    if request.method == "POST" and form.is_valid():
        address = form.cleaned_data["address"]
        created = suppression_add(
            org=request.org,
            address=address,
            reason=SuppressionReason.MANUAL,
            detail=form.cleaned_data["detail"],
            user=request.user,
        )
        if created:
            messages.success(request, f"{address} added to the opt-out list.")
        else:
            messages.info(request, f"{address} was already on the opt-out list.")
        return redirect("delivery:suppression_list")
    return render(request, "delivery/suppression_form.html", {"form": form})


@admin_required
def suppression_import(request: HttpRequest) -> HttpResponse:
    form = SuppressionImportForm(request.POST or None, request.FILES or None, org=request.org)
    result = None
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        result = suppressions_import(
            org=request.org, stream=upload, file_name=upload.name, user=request.user
        )
        if result.accepted:
            message = (
                f"“{upload.name}” imported: {result.added:,} addresses added to the opt-out "
                f"list, {result.already_there:,} already there."
            )
            if result.messages_opted_out:
                message += f" {result.messages_opted_out:,} queued messages will not be sent."
            messages.success(request, message)
            return redirect("delivery:suppression_list")
    # A rejected file is reported here, beside the form for the corrected one.
    return render(request, "delivery/suppression_import.html", {"form": form, "result": result})


@admin_required
def suppression_delete(request: HttpRequest, suppression_id: int) -> HttpResponse:
    suppression = get_for_org(request, Suppression, pk=suppression_id)
    if request.method == "POST":
        suppression_remove(org=request.org, address=suppression.address)
        messages.success(request, f"{suppression.address} removed from the opt-out list.")
        return redirect("delivery:suppression_list")
    return render(request, "delivery/suppression_confirm_delete.html", {"suppression": suppression})


@public
@csrf_exempt
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks to confirm and changes nothing; POST (also RFC 8058 one-click) unsubscribes."""
    message_id = unsubscribe_message_id(token)
    message = (
        Message.objects.select_related("org").filter(pk=message_id).first()
        if message_id is not None
        else None
    )
    if message is None:
        raise Http404("This unsubscribe link is not valid.")
    done = False
    if request.method == "POST":
        suppression_add(
            org=message.org_id,
            address=message.address,
            reason=SuppressionReason.UNSUBSCRIBE,
            message=message,
        )
        done = True
    elif Suppression.objects.filter(org_id=message.org_id, address=message.address).exists():
        done = True
    context = {"message": message, "sender_org": message.org, "done": done}
    return render(request, "delivery/unsubscribe.html", context)


def campaign_delivery_context(campaign: Campaign) -> dict:
    """The campaign page's delivery section: counts, the send plan and what holds it back."""
    counts = status_counts(campaign=campaign)
    total = sum(counts.values())
    sent = total - sum(counts[s] for s in NOT_SENT_STATUSES)
    # A schedule that cannot be read (the dispatcher stops on it too) is said, never guessed at.
    readable = bool(campaign.schedule) and not campaign.schedule_problem
    narrowing = None
    if campaign.channel == Channel.SMS and campaign.org.quiet_hours and readable:
        narrowing = windows.narrowing_description(campaign.weekly_hours)
    waiting_for = None
    if campaign.status == Status.SCHEDULED and campaign.run_at and campaign.run_at <= now():
        waiting_for = channel_holder(campaign)
    plan = send_plan(campaign) if counts[MessageStatus.QUEUED] else None
    campaign.unconfirmed = counts[MessageStatus.UNKNOWN]
    return {
        "counts": [(MessageStatus(s).label, s, n) for s, n in counts.items() if n],
        "total": total,
        "sent": sent,
        "unknown": counts[MessageStatus.UNKNOWN],
        "plan": plan,
        "narrowing": narrowing,
        "waiting_for": waiting_for,
        "status_words": _status_words(campaign, readable=readable),
        "schedule_problem": campaign.schedule_problem,
        "stopped_lists": list(
            campaign.recipient_lists.filter(
                error_at__isnull=False, status__in=[ListStatus.SCHEDULED, ListStatus.IN_PROGRESS]
            ).only("pk", "file_name", "error_at")[:10]
        ),
        "figures": analytics.campaign_figures(campaign, counts),
        "failures": analytics.failure_reasons(campaign) if total else [],
        "rate_per_minute": analytics.send_rate(campaign) if campaign.holds_channel else None,
        "chart": analytics.sends_per_hour_chart(campaign, plan.sends_per_hour if plan else None),
        "breakdown": analytics.status_breakdown(counts),
        "live": campaign.status
        in (Status.SCHEDULED, Status.IN_PROGRESS, Status.PAUSED, Status.ACTIVE_RETRIES),
    }


def _status_words(campaign: Campaign, *, readable: bool) -> str:
    """ "In Progress — sending to …" while running by a schedule that reads, else the status with
    its unconfirmed messages ("Complete — 31 unconfirmed")."""
    if campaign.status != Status.IN_PROGRESS or not readable:
        return campaign.status_text
    words = analytics.status_in_words(campaign)
    return f"{words}; {campaign.unconfirmed:,} unconfirmed" if campaign.unconfirmed else words


@member_required
def campaign_live(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """The campaign page's live part, polled every few seconds while the campaign is active."""
    campaign = get_for_org(
        request, Campaign.objects.select_related("sender", "org"), pk=campaign_id
    )
    context = {"campaign": campaign, **campaign_delivery_context(campaign)}
    if request.htmx and not context["live"]:
        # The campaign just finished or stopped: its header, buttons and lists change too.
        return HttpResponseClientRefresh()
    return render(request, "delivery/partials/campaign_delivery.html", context)


@member_required
def campaign_messages_page(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_for_org(request, Campaign, pk=campaign_id)
    filters = {k: request.GET.get(k, "").strip() for k in ("status", "list", "error", "q")}
    messages_qs = campaign_messages(
        campaign=campaign,
        status=filters["status"],
        list_id=filters["list"],
        error_code=filters["error"],
        query=filters["q"],
    ).select_related("recipient_list")
    page = keyset_page(
        messages_qs, after=request.GET.get("after", ""), before=request.GET.get("before", "")
    )
    context = {
        "campaign": campaign,
        "page": page,
        "filters": filters,
        "query_string": urlencode({k: v for k, v in filters.items() if v}),
        "statuses": MessageStatus.choices,
        "lists": campaign.recipient_lists.all(),
        "can_retry": request.membership.is_admin and campaign.can("retry"),
        "retryable": set(RETRYABLE_ONE_BY_ONE),
    }
    return render(request, "delivery/campaign_messages.html", context)


@member_required
def campaign_messages_export(request: HttpRequest, campaign_id: int) -> StreamingHttpResponse:
    campaign = get_for_org(request, Campaign, pk=campaign_id)
    rows = message_rows(Message.objects.filter(campaign=campaign))
    return _csv_response(csv_lines(MESSAGE_HEADER, rows), f"campaign-{campaign.pk}-messages.csv")


@member_required
def campaigns_export(request: HttpRequest) -> StreamingHttpResponse:
    campaigns = Campaign.objects.filter(org=request.org).order_by("-created_at", "-id")
    progress = campaigns_progress(list(campaigns.values_list("id", flat=True)))
    rows = campaign_rows(campaigns, progress)
    return _csv_response(csv_lines(CAMPAIGN_HEADER, rows), f"{request.org.slug}-campaigns.csv")


def _csv_response(lines, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
