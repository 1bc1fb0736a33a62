from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.clickjacking import xframe_options_sameorigin

from campaigns import services
from campaigns.forms import (
    SCHEDULE_PRESETS,
    CampaignForm,
    ScheduleRunForm,
    apply_schedule_preset,
    sender_form_class,
    template_form_class,
)
from campaigns.models import ActionNotAllowed, Campaign, Channel, MessageTemplate, Sender, Status
from campaigns.rendering import SAMPLE_RECIPIENT, render_email_text
from campaigns.rendering import render as render_template_text
from campaigns.segments import count_segments
from campaigns.selectors import campaign_activity, campaigns_for_list
from delivery.reconciliation import EMAIL_NOT_LOOKED_UP
from delivery.selectors import campaigns_progress, unconfirmed_counts
from delivery.tasks import reconcile_unconfirmed
from delivery.views import campaign_delivery_context
from orgs.access import admin_required, get_for_org, member_required
from orgs.parsing import parse_ids
from recipients.views import recipient_lists_context

PAGE_SIZE = 25


def _channel_or_404(channel: str) -> str:
    if channel not in Channel.values:
        raise Http404("Unknown channel")
    return channel


# ---------------------------------------------------------------- senders


@member_required
def sender_list(request: HttpRequest) -> HttpResponse:
    senders = Sender.objects.filter(org=request.org)
    return render(request, "campaigns/sender_list.html", {"senders": senders})


@admin_required
def sender_create(request: HttpRequest, channel: str) -> HttpResponse:
    form_class = sender_form_class(_channel_or_404(channel))
    form = form_class(request.POST or None, org=request.org)
    if request.method == "POST" and form.is_valid():
        sender = services.sender_save(sender=form.instance, user=request.user)
        messages.success(request, f"Sender “{sender.label}” created.")
        return redirect("campaigns:sender_list")
    return render(request, "campaigns/sender_form.html", {"form": form, "channel": channel})


@admin_required
def sender_edit(request: HttpRequest, sender_id: int) -> HttpResponse:
    sender = get_for_org(request, Sender, pk=sender_id)
    form = sender_form_class(sender.channel)(request.POST or None, instance=sender, org=request.org)
    if request.method == "POST" and form.is_valid():
        services.sender_save(sender=form.instance, user=request.user)
        messages.success(request, f"Sender “{sender.label}” saved.")
        return redirect("campaigns:sender_list")
    return render(request, "campaigns/sender_form.html", {"form": form, "channel": sender.channel})


@admin_required
def sender_delete(request: HttpRequest, sender_id: int) -> HttpResponse:
    sender = get_for_org(request, Sender, pk=sender_id)
    in_use = list(sender.campaigns.all()[:10])
    if request.method == "POST" and not in_use:
        services.sender_delete(sender=sender, user=request.user)
        messages.success(request, f"Sender “{sender.label}” deleted.")
        return redirect("campaigns:sender_list")
    return render(
        request,
        "campaigns/confirm_delete.html",
        {"object": sender, "kind": "sender", "in_use": in_use, "cancel": "campaigns:sender_list"},
    )


# ---------------------------------------------------------------- message templates


@member_required
def template_list(request: HttpRequest) -> HttpResponse:
    templates = MessageTemplate.objects.filter(org=request.org)
    channel = request.GET.get("channel", "")
    if channel in Channel.values:
        templates = templates.filter(channel=channel)
    return render(
        request, "campaigns/template_list.html", {"templates": templates, "channel": channel}
    )


def _template_form_page(request: HttpRequest, form, template: MessageTemplate) -> HttpResponse:
    return render(
        request,
        "campaigns/template_form.html",
        {"form": form, "template_obj": template, "sample": SAMPLE_RECIPIENT},
    )


@admin_required
def template_create(request: HttpRequest, channel: str) -> HttpResponse:
    form = template_form_class(_channel_or_404(channel))(
        request.POST or None, request.FILES or None, org=request.org
    )
    if request.method == "POST" and form.is_valid():
        template = services.template_save(
            template=form.instance,
            user=request.user,
            new_attachments=form.cleaned_data.get("new_attachments", []),
        )
        messages.success(request, f"Template “{template.name}” created.")
        return redirect("campaigns:template_detail", template_id=template.pk)
    return _template_form_page(request, form, form.instance)


@admin_required
def template_edit(request: HttpRequest, template_id: int) -> HttpResponse:
    template = get_for_org(request, MessageTemplate, pk=template_id)
    form = template_form_class(template.channel)(
        request.POST or None, request.FILES or None, instance=template, org=request.org
    )
    if request.method == "POST" and form.is_valid():
        services.template_save(
            template=form.instance,
            user=request.user,
            new_attachments=form.cleaned_data.get("new_attachments", []),
            removed_attachment_ids=[a.pk for a in form.cleaned_data.get("remove_attachments", [])],
        )
        messages.success(request, f"Template “{template.name}” saved.")
        return redirect("campaigns:template_detail", template_id=template.pk)
    return _template_form_page(request, form, template)


def template_preview_context(template: MessageTemplate) -> dict:
    """A template rendered for the sample recipient (shared by the pages that show it)."""
    if template.channel == Channel.SMS:
        text = render_template_text(template.body, SAMPLE_RECIPIENT)
        return {"preview_text": text, "segments": count_segments(text)}
    return {
        "preview_subject": render_template_text(template.subject, SAMPLE_RECIPIENT),
        "preview_text": render_email_text(template.text_body, SAMPLE_RECIPIENT),
    }


@member_required
def template_detail(request: HttpRequest, template_id: int) -> HttpResponse:
    template = get_for_org(request, MessageTemplate, pk=template_id)
    context = {"template_obj": template, **template_preview_context(template)}
    context["campaigns"] = template.campaigns.all()
    return render(request, "campaigns/template_detail.html", context)


@member_required
@xframe_options_sameorigin
def template_html_preview(request: HttpRequest, template_id: int) -> HttpResponse:
    """The email's HTML rendered for the sample recipient, for a sandboxed frame."""
    template = get_for_org(request, MessageTemplate, pk=template_id, channel=Channel.EMAIL)
    html = render_template_text(template.html_body, SAMPLE_RECIPIENT, html=True)
    response = HttpResponse(html)
    # The preview runs no script and loads nothing but inline styles and images.
    response["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; "
        "frame-ancestors 'self'; sandbox"
    )
    return response


@admin_required
def template_delete(request: HttpRequest, template_id: int) -> HttpResponse:
    template = get_for_org(request, MessageTemplate, pk=template_id)
    in_use = list(template.campaigns.all()[:10])
    if request.method == "POST" and not in_use:
        services.template_delete(template=template, user=request.user)
        messages.success(request, f"Template “{template.name}” deleted.")
        return redirect("campaigns:template_list")
    return render(
        request,
        "campaigns/confirm_delete.html",
        {
            "object": template,
            "kind": "template",
            "in_use": in_use,
            "cancel": "campaigns:template_list",
        },
    )


# ---------------------------------------------------------------- campaigns


@member_required
def campaign_list(request: HttpRequest) -> HttpResponse:
    filters = {k: request.GET.get(k, "").strip() for k in ("status", "channel", "search")}
    campaigns = campaigns_for_list(org=request.org, **filters)
    page = Paginator(campaigns, PAGE_SIZE).get_page(request.GET.get("page"))
    progress = campaigns_progress([c.pk for c in page])
    unconfirmed = unconfirmed_counts([c.pk for c in page])
    for campaign in page:
        campaign.progress = progress[campaign.pk]
        campaign.unconfirmed = unconfirmed[campaign.pk]
    return render(
        request,
        "campaigns/campaign_list.html",
        {"page": page, "filters": filters, "statuses": Status.choices, "channels": Channel.choices},
    )


@admin_required
def campaign_choose_channel(request: HttpRequest) -> HttpResponse:
    return render(request, "campaigns/campaign_choose_channel.html")


def _campaign_form(request: HttpRequest, **kwargs) -> CampaignForm:
    data = request.POST or None
    preset = request.POST.get("preset")
    if preset in SCHEDULE_PRESETS:
        # A preset fills the schedule rows and shows the form again, unsaved and without errors.
        return CampaignForm(initial=apply_schedule_preset(request.POST, preset), **kwargs)
    return CampaignForm(data, **kwargs)


@admin_required
def campaign_create(request: HttpRequest, channel: str) -> HttpResponse:
    form = _campaign_form(request, org=request.org, channel=_channel_or_404(channel))
    if form.is_bound and form.is_valid():
        campaign = services.campaign_create(campaign=form.instance, user=request.user)
        messages.success(request, f"Campaign “{campaign.name}” is Ready.")
        return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)
    return render(
        request,
        "campaigns/campaign_form.html",
        {"form": form, "channel": channel, "creating": True},
    )


@member_required
def campaign_detail(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_for_org(
        request, Campaign.objects.select_related("sender", "template"), pk=campaign_id
    )
    context = {
        "campaign": campaign,
        "activity": campaign_activity(campaign=campaign),
        **template_preview_context(campaign.template),
        **recipient_lists_context(request, campaign),
        **campaign_delivery_context(campaign),
    }
    return render(request, "campaigns/campaign_detail.html", context)


def _refuse(request: HttpRequest, campaign: Campaign, error: ActionNotAllowed) -> HttpResponse:
    messages.error(request, str(error))
    return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)


@admin_required
def campaign_edit(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_for_org(request, Campaign, pk=campaign_id)
    try:
        campaign.require("edit")
    except ActionNotAllowed as error:
        return _refuse(request, campaign, error)
    form = _campaign_form(request, instance=campaign, org=request.org, channel=campaign.channel)
    if form.is_bound and form.is_valid():
        changed = [form.fields[name].label or name for name in form.changed_data]
        try:
            services.campaign_update(campaign=form.instance, user=request.user, changed=changed)
        except ActionNotAllowed as error:
            return _refuse(request, campaign, error)
        messages.success(request, f"Campaign “{campaign.name}” saved.")
        return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)
    return render(
        request,
        "campaigns/campaign_form.html",
        {"form": form, "channel": campaign.channel, "campaign": campaign},
    )


@admin_required
def campaign_delete(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_for_org(request, Campaign, pk=campaign_id)
    try:
        campaign.require("delete")
    except ActionNotAllowed as error:
        return _refuse(request, campaign, error)
    if request.method == "POST":
        try:
            services.campaign_delete(campaign=campaign, user=request.user)
        except ActionNotAllowed as error:
            return _refuse(request, campaign, error)
        messages.success(request, f"Campaign “{campaign.name}” deleted.")
        return redirect("campaigns:campaign_list")
    context = {
        "campaign": campaign,
        "list_count": campaign.recipient_lists.count(),
        "message_count": campaign.messages.count(),
    }
    return render(request, "campaigns/campaign_confirm_delete.html", context)


# ---------------------------------------------------------------- running

_SIMPLE_ACTIONS = {
    "run": (services.campaign_run, "“{name}” is running: messages go out inside each window."),
    "pause": (services.campaign_pause, "“{name}” paused: nothing more is released."),
    "resume": (services.campaign_resume, "“{name}” resumed."),
    "unschedule": (services.campaign_unschedule, "“{name}” is no longer scheduled."),
}


def _simple_action(request: HttpRequest, campaign_id: int, action: str) -> HttpResponse:
    campaign = get_for_org(request, Campaign, pk=campaign_id)
    if request.method != "POST":
        return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)
    service, done = _SIMPLE_ACTIONS[action]
    try:
        service(campaign=campaign, user=request.user)
    except ActionNotAllowed as error:
        return _refuse(request, campaign, error)
    messages.success(request, done.format(name=campaign.name))
    return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)


@admin_required
def campaign_run(request: HttpRequest, campaign_id: int) -> HttpResponse:
    return _simple_action(request, campaign_id, "run")


@admin_required
def campaign_pause(request: HttpRequest, campaign_id: int) -> HttpResponse:
    return _simple_action(request, campaign_id, "pause")


@admin_required
def campaign_resume(request: HttpRequest, campaign_id: int) -> HttpResponse:
    return _simple_action(request, campaign_id, "resume")


@admin_required
def campaign_unschedule(request: HttpRequest, campaign_id: int) -> HttpResponse:
    return _simple_action(request, campaign_id, "unschedule")


@admin_required
def campaign_schedule(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_for_org(request, Campaign, pk=campaign_id)
    form = ScheduleRunForm(request.POST or None, org=request.org)
    if request.method == "POST" and form.is_valid():
        try:
            services.campaign_schedule(
                campaign=campaign, user=request.user, run_at=form.cleaned_data["run_at"]
            )
        except ActionNotAllowed as error:
            return _refuse(request, campaign, error)
        messages.success(request, f"“{campaign.name}” is scheduled.")
        return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)
    return render(request, "campaigns/campaign_schedule.html", {"campaign": campaign, "form": form})


@admin_required
def campaign_stop(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_for_org(request, Campaign, pk=campaign_id)
    try:
        campaign.require("stop")
    except ActionNotAllowed as error:
        return _refuse(request, campaign, error)
    if request.method == "POST":
        try:
            cancelled = services.campaign_stop(campaign=campaign, user=request.user)
        except ActionNotAllowed as error:
            return _refuse(request, campaign, error)
        messages.success(
            request, f"“{campaign.name}” stopped: {cancelled} unsent messages cancelled."
        )
        return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)
    queued = campaign.messages.filter(status="queued").count()
    return render(
        request, "campaigns/campaign_confirm_stop.html", {"campaign": campaign, "queued": queued}
    )


@admin_required
def campaign_retry_unconfirmed(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """GET: what retrying unconfirmed messages means; POST: queues them again."""
    campaign = get_for_org(request, Campaign, pk=campaign_id)
    try:
        campaign.require("retry_unconfirmed")
    except ActionNotAllowed as error:
        return _refuse(request, campaign, error)
    if request.method == "POST":
        try:
            retried = services.campaign_retry_unconfirmed(campaign=campaign, user=request.user)
        except ActionNotAllowed as error:
            return _refuse(request, campaign, error)
        messages.success(
            request,
            f"{retried} unconfirmed message{'s' if retried != 1 else ''} queued again; they go "
            "out inside each recipient's window.",
        )
        return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)
    unconfirmed = campaign.messages.filter(status="unknown").count()
    return render(
        request,
        "campaigns/campaign_confirm_retry_unconfirmed.html",
        {"campaign": campaign, "unconfirmed": unconfirmed},
    )


@admin_required
def campaign_reconcile(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """POST: asks Twilio about the campaign's unconfirmed messages, in the background."""
    campaign = get_for_org(request, Campaign, pk=campaign_id)
    if request.method != "POST":
        return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)
    try:
        campaign.require("reconcile")
    except ActionNotAllowed as error:
        return _refuse(request, campaign, error)
    if campaign.channel != Channel.SMS:
        return _refuse(request, campaign, ActionNotAllowed(EMAIL_NOT_LOOKED_UP))
    reconcile_unconfirmed.delay_on_commit(campaign.pk, request.user.pk)
    messages.success(
        request,
        "Twilio is being asked about the unconfirmed messages; their statuses change as its "
        "answers come (the activity history says what it found).",
    )
    return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)


@admin_required
def campaign_retry(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """POST: retries the failed messages named in `message` (several allowed), or all of them."""
    campaign = get_for_org(request, Campaign, pk=campaign_id)
    if request.method != "POST":
        return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)
    raw_ids = request.POST.getlist("message")
    ids = parse_ids(raw_ids) if raw_ids else None
    if raw_ids and ids is None:
        messages.error(request, "Pick the messages to retry.")
        return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)
    try:
        retried = services.campaign_retry(campaign=campaign, user=request.user, message_ids=ids)
    except ActionNotAllowed as error:
        return _refuse(request, campaign, error)
    messages.success(
        request,
        f"{retried} message{'s' if retried != 1 else ''} queued again; they go out inside each "
        "recipient's window. Opted-out recipients are never retried.",
    )
    return redirect("campaigns:campaign_detail", campaign_id=campaign.pk)
