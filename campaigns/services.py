"""Writes on senders, message templates and campaigns; each one lands in the activity history."""

from collections.abc import Iterable, Sequence
from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from campaigns.email_html import html_to_text, sanitize_email_html
from campaigns.models import (
    ActionNotAllowed,
    ActivityEntry,
    Campaign,
    Channel,
    MessageTemplate,
    Sender,
    Status,
    TemplateAttachment,
)
from orgs.models import Organization


def activity_record(
    *,
    org: Organization,
    actor: AbstractBaseUser | None,
    verb: str,
    subject: str,
    campaign: Campaign | None = None,
    detail: str = "",
    via: str = "",
) -> ActivityEntry:
    """Adds a line to the activity history (and touches the campaign's last activity); `via`
    names where a change was made outside the console ("edited template (admin)")."""
    entry = ActivityEntry.objects.create(
        org=org,
        actor=actor,
        verb=f"{verb} ({via})" if via else verb,
        subject=subject,
        campaign=campaign,
        detail=detail,
    )
    if campaign is not None and campaign.pk:
        Campaign.objects.filter(pk=campaign.pk).update(last_activity_at=entry.created_at)
    return entry


def changes_detail(changed: Sequence[str]) -> str:
    """The history's note of which settings an edit changed."""
    return ("Changed " + ", ".join(changed)) if changed else ""


@transaction.atomic
def sender_save(
    *, sender: Sender, user: AbstractBaseUser, changed: Sequence[str] = (), via: str = ""
) -> Sender:
    """Creates or updates a sender."""
    verb = "edited" if sender.pk else "created"
    sender.save()
    activity_record(
        org=sender.org,
        actor=user,
        verb=f"{verb} sender",
        subject=str(sender),
        detail=changes_detail(changed),
        via=via,
    )
    return sender


@transaction.atomic
def sender_delete(*, sender: Sender, user: AbstractBaseUser, via: str = "") -> None:
    """Deletes a sender no campaign uses (the caller checks `sender.campaigns`)."""
    activity_record(org=sender.org, actor=user, verb="deleted sender", subject=str(sender), via=via)
    sender.delete()


@transaction.atomic
def template_save(
    *,
    template: MessageTemplate,
    user: AbstractBaseUser,
    new_attachments: Iterable[UploadedFile] = (),
    removed_attachment_ids: Iterable[int] = (),
    changed: Sequence[str] = (),
    via: str = "",
) -> MessageTemplate:
    """Creates or updates a message template; email HTML is sanitised and its text derived."""
    verb = "edited" if template.pk else "created"
    if template.channel == Channel.EMAIL:
        template.html_body = sanitize_email_html(template.html_body)
        if not template.text_is_custom:
            template.text_body = html_to_text(template.html_body)
    template.save()
    template.attachments.filter(pk__in=list(removed_attachment_ids)).delete()
    for upload in new_attachments:
        TemplateAttachment.objects.create(
            template=template,
            file=upload,
            filename=upload.name,
            content_type=upload.content_type or "application/octet-stream",
            size=upload.size,
        )
    activity_record(
        org=template.org,
        actor=user,
        verb=f"{verb} template",
        subject=str(template),
        detail=changes_detail(changed),
        via=via,
    )
    return template


@transaction.atomic
def template_delete(*, template: MessageTemplate, user: AbstractBaseUser, via: str = "") -> None:
    """Deletes a template no campaign uses (the caller checks `template.campaigns`)."""
    activity_record(
        org=template.org, actor=user, verb="deleted template", subject=str(template), via=via
    )
    template.delete()


@transaction.atomic
def campaign_create(*, campaign: Campaign, user: AbstractBaseUser) -> Campaign:
    """Saves a new campaign; it is Ready because the form required sender, template and hours."""
    campaign.created_by = user
    campaign.save()
    activity_record(
        org=campaign.org, actor=user, verb="created", subject=campaign.name, campaign=campaign
    )
    return campaign


@transaction.atomic
def campaign_update(
    *, campaign: Campaign, user: AbstractBaseUser, changed: Sequence[str], via: str = ""
) -> Campaign:
    """Saves an edited Ready campaign and records which settings changed."""
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    # Re-checked under the row lock: the campaign may have started since the form was shown.
    locked.require("edit")
    campaign.save()
    activity_record(
        org=campaign.org,
        actor=user,
        verb="edited",
        subject=campaign.name,
        campaign=campaign,
        detail=changes_detail(changed) or "No changes",
        via=via,
    )
    return campaign


@transaction.atomic
def campaign_delete(*, campaign: Campaign, user: AbstractBaseUser, via: str = "") -> None:
    """Deletes a Ready or Complete campaign with its recipients and messages."""
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    locked.require("delete")
    activity_record(
        org=campaign.org,
        actor=user,
        verb="deleted",
        subject=campaign.name,
        detail=f"{campaign.get_channel_display()} campaign, created "
        f"{timezone.localtime(campaign.created_at, campaign.org.tz):%Y-%m-%d %H:%M}",
        via=via,
    )
    campaign.delete()


# ---------------------------------------------------------------- running


def channel_holder(campaign: Campaign) -> Campaign | None:
    """The other campaign holding this campaign's channel in its organization, if any."""
    return (
        Campaign.objects.filter(
            org_id=campaign.org_id,
            channel=campaign.channel,
            status__in=[Status.IN_PROGRESS, Status.PAUSED],
        )
        .exclude(pk=campaign.pk)
        .first()
    )


def _busy(campaign: Campaign, verb: str) -> ActionNotAllowed:
    holder = channel_holder(campaign)
    name = f"“{holder.name}”" if holder else "another campaign"
    return ActionNotAllowed(
        f"“{campaign.name}” cannot {verb}: {name} is already sending "
        f"{campaign.get_channel_display()} messages in this organization. Only one "
        f"{campaign.get_channel_display()} campaign runs at a time; stop it or wait for it "
        "to finish."
    )


def campaign_start(campaign: Campaign, *, now: datetime, actor: AbstractBaseUser | None) -> bool:
    """Moves a Ready or Scheduled campaign to In Progress unless its channel is busy."""
    try:
        with transaction.atomic():
            updated = Campaign.objects.filter(
                pk=campaign.pk, status__in=[Status.READY, Status.SCHEDULED]
            ).update(
                status=Status.IN_PROGRESS,
                started_at=now,
                finished_at=None,
                last_activity_at=now,
            )
    except IntegrityError:
        return False  # the database's per-channel lock: another campaign holds the channel
    if updated:
        campaign.status = Status.IN_PROGRESS
        activity_record(
            org=campaign.org,
            actor=actor,
            verb="ran" if actor else "started",
            subject=campaign.name,
            campaign=campaign,
            detail="" if actor else "at its scheduled time",
        )
    return bool(updated)


def _require_recipients(campaign: Campaign) -> None:
    if not campaign.recipient_lists.exists():
        raise ActionNotAllowed("Add a recipient list before running the campaign.")


def campaign_run(*, campaign: Campaign, user: AbstractBaseUser) -> None:
    """Runs a Ready campaign now; refused, naming the holder, while its channel is busy."""
    campaign.require("run")
    _require_recipients(campaign)
    if not campaign_start(campaign, now=timezone.now(), actor=user):
        raise _busy(campaign, "run")


def campaign_schedule(*, campaign: Campaign, user: AbstractBaseUser, run_at: datetime) -> None:
    """Schedules a Ready campaign to run at `run_at` (or when its channel frees after that)."""
    campaign.require("schedule")
    _require_recipients(campaign)
    _set_status(campaign, Status.SCHEDULED, run_at=run_at)
    activity_record(
        org=campaign.org,
        actor=user,
        verb="scheduled",
        subject=campaign.name,
        campaign=campaign,
        detail=f"to run at {run_at.astimezone(campaign.org.tz):%Y-%m-%d %H:%M} "
        f"{campaign.org.timezone}",
    )


def campaign_unschedule(*, campaign: Campaign, user: AbstractBaseUser) -> None:
    campaign.require("unschedule")
    _set_status(campaign, Status.READY, run_at=None)
    activity_record(
        org=campaign.org, actor=user, verb="unscheduled", subject=campaign.name, campaign=campaign
    )


def campaign_pause(*, campaign: Campaign, user: AbstractBaseUser) -> None:
    """Holds every release; nothing is cancelled and the campaign keeps its channel."""
    campaign.require("pause")
    _set_status(campaign, Status.PAUSED)
    activity_record(
        org=campaign.org, actor=user, verb="paused", subject=campaign.name, campaign=campaign
    )


def campaign_resume(*, campaign: Campaign, user: AbstractBaseUser) -> None:
    campaign.require("resume")
    _set_status(campaign, Status.IN_PROGRESS)
    activity_record(
        org=campaign.org, actor=user, verb="resumed", subject=campaign.name, campaign=campaign
    )


@transaction.atomic
def campaign_stop(*, campaign: Campaign, user: AbstractBaseUser) -> int:
    """Cancels queued messages only (those with the provider finish) and frees the channel."""
    from delivery.models import Message, MessageStatus
    from recipients.models import ListStatus, RecipientList

    campaign.require("stop")
    now = timezone.now()
    cancelled = Message.objects.filter(campaign=campaign, status=MessageStatus.QUEUED).update(
        status=MessageStatus.CANCELLED, final_at=now
    )
    RecipientList.objects.filter(
        campaign=campaign, status__in=[ListStatus.SCHEDULED, ListStatus.IN_PROGRESS]
    ).update(status=ListStatus.STOPPED, stopped_at=now)
    _set_status(campaign, Status.STOPPED, finished_at=now)
    activity_record(
        org=campaign.org,
        actor=user,
        verb="stopped",
        subject=campaign.name,
        campaign=campaign,
        detail=f"{cancelled} unsent messages cancelled",
    )
    return cancelled


# "unknown" may have reached the recipient, so only an explicit retry of one message resends it.
RETRYABLE_IN_BULK = ("failed", "undelivered")
RETRYABLE_ONE_BY_ONE = (*RETRYABLE_IN_BULK, "unknown")


@transaction.atomic
def campaign_retry(
    *, campaign: Campaign, user: AbstractBaseUser, message_ids: Iterable[int] | None = None
) -> int:
    """Queues failed messages again (all, or the given ones); opted-out recipients never."""
    from delivery.models import Message

    campaign.require("retry")
    if message_ids is None:
        messages = Message.objects.filter(campaign=campaign, status__in=RETRYABLE_IN_BULK)
    else:
        messages = Message.objects.filter(
            campaign=campaign, status__in=RETRYABLE_ONE_BY_ONE, pk__in=list(message_ids)
        )
    return _queue_again(
        campaign,
        user,
        messages,
        nothing="There are no failed messages to retry (opted-out recipients are never retried).",
    )


@transaction.atomic
def campaign_retry_unconfirmed(*, campaign: Campaign, user: AbstractBaseUser) -> int:
    """Queues the unconfirmed ("unknown") messages again; opted-out recipients never. The
    provider may have them, so a recipient may get one twice: the console asks first."""
    from delivery.models import Message, MessageStatus

    campaign.require("retry_unconfirmed")
    messages = Message.objects.filter(campaign=campaign, status=MessageStatus.UNKNOWN)
    return _queue_again(
        campaign,
        user,
        messages,
        nothing="There are no unconfirmed messages to retry (opted-out recipients are never "
        "retried).",
        what="unconfirmed ",
    )


def _queue_again(
    campaign: Campaign, user: AbstractBaseUser, messages: QuerySet, *, nothing: str, what: str = ""
) -> int:
    """Queues these messages again inside each window and runs the campaign again."""
    from delivery.models import MessageStatus, Suppression
    from recipients.models import ListStatus, RecipientList

    suppressed = Suppression.objects.filter(org_id=campaign.org_id).values("address")
    messages = messages.exclude(address__in=suppressed)
    list_ids = set(messages.values_list("recipient_list_id", flat=True))
    if not list_ids:
        raise ActionNotAllowed(nothing)
    now = timezone.now()
    try:
        with transaction.atomic():
            _set_status(campaign, Status.IN_PROGRESS, finished_at=None)
    except IntegrityError:
        raise _busy(campaign, "retry") from None
    retried = messages.update(
        status=MessageStatus.QUEUED,
        eligible_at=now,
        handed_at=None,
        lease_until=None,
        final_at=None,
        error_code="",
        error_message="",
    )
    RecipientList.objects.filter(pk__in=list_ids).update(status=ListStatus.IN_PROGRESS)
    activity_record(
        org=campaign.org,
        actor=user,
        verb="retried",
        subject=campaign.name,
        campaign=campaign,
        detail=f"{retried} {what}message{'s' if retried != 1 else ''} queued again",
    )
    return retried


def _set_status(campaign: Campaign, status: str, **fields: object) -> None:
    fields["last_activity_at"] = timezone.now()
    Campaign.objects.filter(pk=campaign.pk).update(status=status, **fields)
    campaign.status = status
    for name, value in fields.items():
        setattr(campaign, name, value)
