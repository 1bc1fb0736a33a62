from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from campaigns.models import ActionNotAllowed, Campaign
from delivery.models import MessageStatus
from delivery.selectors import lists_progress, send_plan, status_counts
from orgs.access import admin_required, get_for_org, member_required
from recipients.forms import RecipientListForm
from recipients.models import ListStatus, RecipientList, RejectedUpload
from recipients.selectors import list_tabs, lists_in_tab, recent_rejections
from recipients.services import (
    ListDatesRefused,
    csv_template,
    recipient_list_import,
    recipient_list_stop,
)


@admin_required
def list_upload(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_for_org(request, Campaign, pk=campaign_id)
    if not campaign.can("add_list"):
        status = campaign.get_status_display()
        messages.error(request, f"Recipient lists cannot be added to a campaign that is {status}.")
        return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)
    form = RecipientListForm(request.POST or None, request.FILES or None, org=request.org)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            result = recipient_list_import(
                campaign=campaign,
                stream=upload,
                file_name=upload.name,
                start_at=form.cleaned_data["start_at"],
                end_at=form.cleaned_data["end_at"],
                user=request.user,
            )
        except ActionNotAllowed as error:
            messages.error(request, str(error))
            return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)
        except ListDatesRefused as error:
            # The form judged the end against the start a moment before the start became now.
            form.add_error("end_at", str(error))
            return render(
                request, "recipients/list_upload.html", {"campaign": campaign, "form": form}
            )
        if result.rejected:
            return redirect("recipients:rejected_detail", rejected_id=result.rejected.pk)
        messages.success(request, _accepted_message(result.recipient_list))
        return redirect("recipients:list_detail", list_id=result.recipient_list.pk)
    return render(request, "recipients/list_upload.html", {"campaign": campaign, "form": form})


def _accepted_message(recipient_list: RecipientList) -> str:
    parts = [f"“{recipient_list.file_name}” imported: {recipient_list.recipient_count} recipients."]
    if recipient_list.duplicate_count:
        parts.append(f"{recipient_list.duplicate_count} duplicate rows were kept once.")
    if recipient_list.suppressed_count:
        parts.append(
            f"{recipient_list.suppressed_count} recipients are on the opt-out list and will not "
            "be contacted."
        )
    return " ".join(parts)


@member_required
def csv_template_download(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_for_org(request, Campaign, pk=campaign_id)
    response = HttpResponse(csv_template(campaign.channel), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="outreach-{campaign.channel}-recipients-template.csv"'
    )
    return response


@member_required
def list_detail(request: HttpRequest, list_id: int) -> HttpResponse:
    recipient_list = get_for_org(
        request, RecipientList.objects.select_related("campaign", "created_by"), pk=list_id
    )
    counts = status_counts(recipient_list=recipient_list)
    recipient_list.progress = lists_progress([recipient_list.pk])[recipient_list.pk]
    context = {
        "recipient_list": recipient_list,
        "campaign": recipient_list.campaign,
        "counts": [(MessageStatus(s).label, s, n) for s, n in counts.items() if n],
        "plan": send_plan(recipient_list.campaign, recipient_list=recipient_list)
        if recipient_list.can_stop
        else None,
    }
    return render(request, "recipients/list_detail.html", context)


@admin_required
def list_stop(request: HttpRequest, list_id: int) -> HttpResponse:
    recipient_list = get_for_org(
        request, RecipientList.objects.select_related("campaign"), pk=list_id
    )
    if not recipient_list.can_stop:
        messages.error(
            request, f"This list is {recipient_list.get_status_display()} and cannot be stopped."
        )
        return redirect("recipients:list_detail", list_id=recipient_list.pk)
    if request.method == "POST":
        cancelled = recipient_list_stop(recipient_list=recipient_list, user=request.user)
        messages.success(
            request,
            f"“{recipient_list.file_name}” stopped: {cancelled} unsent messages cancelled.",
        )
        return redirect("campaigns:campaign_detail", campaign_id=recipient_list.campaign_id)
    return render(
        request,
        "recipients/list_confirm_stop.html",
        {"recipient_list": recipient_list, "campaign": recipient_list.campaign},
    )


@member_required
def rejected_detail(request: HttpRequest, rejected_id: int) -> HttpResponse:
    # A rejected opt-out file is shown on the import page itself; only its log is downloaded.
    uploads = RejectedUpload.objects.filter(campaign__isnull=False).select_related("campaign")
    rejected = get_for_org(request, uploads, pk=rejected_id)
    context = {"rejected": rejected, "campaign": rejected.campaign}
    return render(request, "recipients/rejected_detail.html", context)


@member_required
def error_log_download(request: HttpRequest, rejected_id: int) -> FileResponse:
    rejected = get_for_org(request, RejectedUpload, pk=rejected_id)
    stem = rejected.file_name.rsplit(".", 1)[0] or "upload"
    return FileResponse(
        rejected.error_log.open("rb"),
        as_attachment=True,
        filename=f"{stem}-errors.csv",
        content_type="text/csv; charset=utf-8",
    )


LISTS_PER_PAGE = 20


def recipient_lists_context(request: HttpRequest, campaign: Campaign) -> dict:
    """The campaign page's recipient-list tabs: counts per status and the chosen tab's lists."""
    tabs = list_tabs(campaign=campaign)
    chosen = request.GET.get("lists")
    if chosen not in ListStatus.values:
        # Open the first tab that has something in it, so a new list is visible at once.
        chosen = next((status.value for status, count in tabs if count), ListStatus.SCHEDULED)
    lists = Paginator(lists_in_tab(campaign=campaign, status=chosen), LISTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    progress = lists_progress([rl.pk for rl in lists])
    for recipient_list in lists:
        recipient_list.progress = progress[recipient_list.pk]
    return {
        "list_tabs": tabs,
        "list_tab": chosen,
        "list_tab_label": ListStatus(chosen).label,
        "lists": lists,
        "list_filters": {"lists": chosen},
        "rejections": recent_rejections(campaign=campaign),
    }
