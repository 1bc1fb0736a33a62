"""Reads the delivery pages share; every one takes the organization."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from operator import attrgetter
from typing import Any

from django.db.models import Case, Count, Q, QuerySet, Sum, When
from django.utils import timezone

from campaigns.models import TICKED, Campaign, Channel, Status
from delivery import windows
from delivery.models import (
    NOT_SENT_STATUSES,
    InboundMessage,
    Message,
    MessageCount,
    MessageStatus,
    ReplyKind,
    Suppression,
)
from orgs.models import Organization
from orgs.parsing import parse_id
from recipients.models import Contact, ListStatus, RecipientList


def contacts_search(*, org: Organization, query: str = "") -> QuerySet[Contact]:
    contacts = Contact.objects.filter(org=org)
    if query:
        compact = query.replace(" ", "").replace("-", "").replace("(", "").replace(")", "")
        contacts = contacts.filter(
            Q(address__icontains=compact) | Q(address__iexact=query) | Q(name__icontains=query)
        )
    return contacts.order_by("-created_at", "-id")


def contact_timeline(*, contact: Contact, limit: int = 200) -> list[Any]:
    """The contact's campaign messages and replies, newest first."""
    messages = (
        Message.objects.filter(contact=contact)
        .select_related("campaign")
        .order_by("-created_at", "-id")[:limit]
    )
    replies = (
        InboundMessage.objects.filter(contact=contact)
        .select_related("campaign")
        .order_by("-received_at", "-id")[:limit]
    )
    for message in messages:
        message.timeline_at = message.sent_at or message.created_at
        message.entry = "message"
    for reply in replies:
        reply.timeline_at = reply.received_at
        reply.entry = "reply"
    merged = sorted([*messages, *replies], key=attrgetter("timeline_at"), reverse=True)
    return list(islice(merged, limit))


def suppressions_search(*, org: Organization, query: str = "") -> QuerySet[Suppression]:
    suppressions = Suppression.objects.filter(org=org).select_related("created_by")
    if query:
        suppressions = suppressions.filter(address__icontains=query.strip())
    return suppressions


def status_counts(
    *, campaign: Campaign | None = None, recipient_list: RecipientList | None = None
) -> dict[str, int]:
    """Messages per status, every status present (zeros included), for a campaign or a list."""
    counts = MessageCount.objects.all()
    if campaign is not None:
        counts = counts.filter(campaign=campaign)
    if recipient_list is not None:
        counts = counts.filter(recipient_list=recipient_list)
    found = dict(counts.values_list("status").annotate(n=Sum("count")).order_by())
    return {status.value: found.get(status.value, 0) for status in MessageStatus}


@dataclass
class SendPlan:
    queued: int
    rate_per_second: float
    finish_at: datetime | None
    not_contacted: int
    end_at: datetime | None
    sends_per_day: list[tuple[str, int]]
    sends_per_hour: list[tuple[datetime, int]]

    @property
    def warning(self) -> str:
        if not self.not_contacted or self.end_at is None:
            return ""
        rate = f"{self.rate_per_second:g} message{'s' if self.rate_per_second != 1 else ''}/second"
        return (
            f"About {self.not_contacted:,} of {self.queued:,} recipients will not be contacted "
            f"before the end date at {rate}."
        )


def send_plan(
    campaign: Campaign, *, recipient_list: RecipientList | None = None, now: datetime | None = None
) -> SendPlan | None:
    """The forecast for the messages still queued, by the dispatcher's own window rules."""
    from delivery.dispatch import queued_groups

    now = now or timezone.now()
    lists = (
        [recipient_list]
        if recipient_list is not None
        else list(
            campaign.recipient_lists.filter(
                status__in=[ListStatus.SCHEDULED, ListStatus.IN_PROGRESS]
            )
        )
    )
    if not lists or not campaign.schedule or campaign.schedule_problem:
        return None
    groups = queued_groups(campaign, recipient_list=recipient_list)
    queued = sum(group.count for group in groups)
    if not queued:
        return None
    ends = [rl.end_at for rl in lists]
    end = None if any(e is None for e in ends) else max(ends)
    start = min(rl.start_at for rl in lists)
    rate = campaign.sender.messages_per_second
    plan = windows.forecast(
        groups, campaign.weekly_hours, rate_per_second=rate, now=now, start=start, end=end
    )
    per_day: dict[str, int] = {}
    for hour, sent in plan.sends_per_hour:
        day = hour.astimezone(campaign.org.tz).strftime("%a %d %b")
        per_day[day] = per_day.get(day, 0) + sent
    return SendPlan(
        queued=queued,
        rate_per_second=rate,
        finish_at=plan.finish_at,
        not_contacted=plan.not_contacted_before_end,
        end_at=end,
        sends_per_day=list(per_day.items())[:14],
        sends_per_hour=plan.sends_per_hour,
    )


def campaigns_progress(campaign_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(sent, total) per campaign, from the counters."""
    progress: dict[int, list[int]] = {cid: [0, 0] for cid in campaign_ids}
    rows = (
        MessageCount.objects.filter(campaign_id__in=campaign_ids)
        .values_list("campaign_id", "status")
        .annotate(n=Sum("count"))
        .order_by()
    )
    for campaign_id, status, n in rows:
        progress[campaign_id][1] += n
        if status not in NOT_SENT_STATUSES:
            progress[campaign_id][0] += n
    return {cid: (sent, total) for cid, (sent, total) in progress.items()}


def unconfirmed_counts(campaign_ids: list[int]) -> dict[int, int]:
    """Messages per campaign the provider never confirmed ("unknown"), from the counters."""
    rows = (
        MessageCount.objects.filter(campaign_id__in=campaign_ids, status=MessageStatus.UNKNOWN)
        .values_list("campaign_id")
        .annotate(n=Sum("count"))
        .order_by()
    )
    found = dict(rows)
    return {cid: found.get(cid, 0) for cid in campaign_ids}


def lists_progress(list_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(sent, total) per recipient list, from the counters."""
    progress: dict[int, list[int]] = {lid: [0, 0] for lid in list_ids}
    rows = MessageCount.objects.filter(recipient_list_id__in=list_ids).values_list(
        "recipient_list_id", "status", "count"
    )
    for list_id, status, n in rows:
        progress[list_id][1] += n
        if status not in NOT_SENT_STATUSES:
            progress[list_id][0] += n
    return {lid: (sent, total) for lid, (sent, total) in progress.items()}


MESSAGES_PAGE = 50


@dataclass
class MessagePage:
    rows: list[Message]
    next_after: int | None
    prev_before: int | None


def campaign_messages(
    *,
    campaign: Campaign,
    status: str = "",
    list_id: str = "",
    error_code: str = "",
    query: str = "",
) -> QuerySet[Message]:
    # The same as campaign=campaign, written as a range so that PostgreSQL cannot read the
    # (campaign, id) order off the primary key: it would walk every older campaign's rows first
    # (130 ms at a million), where the campaign's own index answers a page in under 1 ms.
    messages = Message.objects.filter(campaign_id__gte=campaign.pk, campaign_id__lte=campaign.pk)
    if status in MessageStatus.values:
        messages = messages.filter(status=status)
    list_pk = parse_id(list_id)
    if list_pk is not None:
        messages = messages.filter(recipient_list_id=list_pk)
    if error_code:
        messages = messages.filter(error_code=error_code)
    if query:
        compact = query.replace(" ", "").replace("-", "").replace("(", "").replace(")", "")
        messages = messages.filter(
            Q(address__icontains=compact) | Q(address__iexact=query) | Q(name__icontains=query)
        )
    return messages


def keyset_page(
    messages: QuerySet[Message], *, after: str = "", before: str = "", size: int = MESSAGES_PAGE
) -> MessagePage:
    """A page in id order after (or before) an id: as fast on page 20,000 as on page 1.

    `messages` is one campaign's (see campaign_messages): ordered by (campaign, id), the order
    of the campaign's own indexes. `after` and `before` come from the query string; anything
    but an id there means the first page.
    """
    end = parse_id(before)
    if end is not None:
        rows = list(messages.filter(id__lt=end).order_by("-campaign_id", "-id")[: size + 1])
        has_more = len(rows) > size
        rows = rows[:size][::-1]
        return MessagePage(
            rows,
            next_after=rows[-1].id if rows else None,
            prev_before=rows[0].id if rows and has_more else None,
        )
    start = parse_id(after) or 0
    rows = list(messages.filter(id__gt=start).order_by("campaign_id", "id")[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    return MessagePage(
        rows,
        next_after=rows[-1].id if rows and has_more else None,
        prev_before=rows[0].id if rows and start else None,
    )


def organization_overview(*, org: Organization, now: datetime | None = None) -> dict:
    """What the dashboard shows: campaigns and their progress, today's sends, who holds each
    channel, conversations started by replies and recent opt-outs."""
    from delivery.analytics import org_sends_today

    now = now or timezone.now()
    active = [Status.IN_PROGRESS, Status.PAUSED, Status.SCHEDULED, Status.ACTIVE_RETRIES]
    campaigns = list(
        Campaign.objects.filter(org=org)
        .order_by(
            Case(When(status__in=active, then=0), default=1),
            "-last_activity_at",
        )
        .select_related("sender")[:10]
    )
    progress = campaigns_progress([c.pk for c in campaigns])
    unconfirmed = unconfirmed_counts([c.pk for c in campaigns])
    for campaign in campaigns:
        campaign.progress = progress[campaign.pk]
        campaign.unconfirmed = unconfirmed[campaign.pk]
    channels = []
    for value, label in Channel.choices:
        holder = Campaign.objects.filter(
            org=org, channel=value, status__in=[Status.IN_PROGRESS, Status.PAUSED]
        ).first()
        waiting = Campaign.objects.filter(org=org, channel=value, status=Status.SCHEDULED)
        channels.append((label, holder, list(waiting.order_by("run_at")[:3])))
    local_midnight = timezone.localtime(now, org.tz).replace(hour=0, minute=0, second=0)
    since = now - timedelta(days=30)
    replies = InboundMessage.objects.filter(org=org, kind=ReplyKind.REPLY)
    return {
        "campaigns": campaigns,
        # Every one the dispatcher stopped by an error, not only those among the ten shown.
        "stopped_by_error": list(
            Campaign.objects.filter(org=org, error_at__isnull=False, status__in=TICKED)
            .order_by("error_at")
            .only("pk", "name", "error_at")[:10]
        ),
        "lists_stopped_by_error": list(
            RecipientList.objects.filter(
                org=org,
                error_at__isnull=False,
                status__in=[ListStatus.SCHEDULED, ListStatus.IN_PROGRESS],
            )
            .select_related("campaign")
            .order_by("error_at")
            .only("pk", "file_name", "error_at", "campaign__name")[:10]
        ),
        "status_totals": [
            (Status(status).label, n)
            for status, n in Campaign.objects.filter(org=org)
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by("status")
        ],
        "sends_today": org_sends_today(org.pk, local_midnight),
        "channels": channels,
        "conversations": replies.filter(received_at__gte=since)
        .values("contact")
        .distinct()
        .count(),
        "recent_replies": replies.select_related("contact", "campaign")[:5],
        "recent_opt_outs": Suppression.objects.filter(org=org)[:5],
    }
