"""What the campaign page and the overview show: delivery and engagement figures, failure
reasons in plain words, the status in a sentence, and server-rendered chart geometry."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Count, Sum
from django.utils import timezone

from campaigns.models import Campaign, Channel, Status
from delivery import windows
from delivery.aggregates import grouped_while_unchanged
from delivery.dispatch import queued_by_zone_and_prefix
from delivery.models import Message, MessageStatus, SendHour

# The provider errors administrators meet most, in words they can act on.
ERROR_EXPLANATIONS = {
    "21211": "Not a valid phone number.",
    "21610": "The recipient replied STOP earlier: the provider blocks messages to them.",
    "21614": "Not a mobile number (a landline cannot receive texts).",
    "30003": "Unreachable: the phone is off or out of coverage.",
    "30004": "Blocked by the recipient.",
    "30005": "Unknown number: it does not exist or is no longer in service.",
    "30006": "Landline or unreachable carrier.",
    "30007": "Filtered by the carrier as spam.",
    "30008": "Unknown error from the carrier.",
    "30034": "The sending number is not registered for A2P 10DLC.",
    "5.1.1": "The mailbox does not exist.",
    "5.2.2": "The mailbox is full.",
    "5.7.1": "Refused by the receiving server (policy or spam).",
    "4.2.2": "The mailbox is temporarily full.",
}


@dataclass
class Figures:
    sent: int
    delivered: int
    failed: int
    bounced: int
    opted_out: int
    assumed_delivered: int
    not_contacted: int
    unknown: int
    opens: int
    clicks: int
    replies: int

    @property
    def delivery_rate(self) -> float | None:
        done = self.delivered + self.assumed_delivered + self.failed + self.bounced
        return (self.delivered + self.assumed_delivered) / done if done else None

    @property
    def delivery_percent(self) -> str:
        rate = self.delivery_rate
        return "" if rate is None else f"{100 * rate:.1f}%"

    @property
    def reply_rate(self) -> float | None:
        return self.replies / self.sent if self.sent else None

    @property
    def open_rate(self) -> float | None:
        return self.opens / self.delivered if self.delivered else None


def campaign_figures(campaign: Campaign, counts: dict[str, int]) -> Figures:
    delivered = counts[MessageStatus.DELIVERED]
    failed = counts[MessageStatus.FAILED] + counts[MessageStatus.UNDELIVERED]
    sent_statuses = (
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.BOUNCED,
        MessageStatus.FAILED,
        MessageStatus.ASSUMED_DELIVERED,
        MessageStatus.UNKNOWN,
        MessageStatus.DEFERRED,
    )
    return Figures(
        sent=sum(counts[s] for s in sent_statuses),
        delivered=delivered,
        failed=failed,
        bounced=counts[MessageStatus.BOUNCED],
        opted_out=counts[MessageStatus.OPTED_OUT],
        assumed_delivered=counts[MessageStatus.ASSUMED_DELIVERED],
        not_contacted=counts[MessageStatus.NOT_CONTACTED],
        unknown=counts[MessageStatus.UNKNOWN],
        opens=campaign.opened_count,
        clicks=campaign.clicked_count,
        replies=campaign.replied_count,
    )


def failure_reasons(campaign: Campaign, limit: int = 8) -> list[tuple[str, int, str]]:
    """(code, messages, explanation) for the commonest provider errors of the campaign."""
    failed = (
        MessageStatus.FAILED,
        MessageStatus.UNDELIVERED,
        MessageStatus.BOUNCED,
        MessageStatus.UNKNOWN,
    )

    def group() -> list[tuple]:
        return list(
            Message.objects.filter(campaign=campaign, status__in=failed)
            .exclude(error_code="")
            .values_list("error_code")
            .annotate(n=Count("id"))
            .order_by("-n")[:limit]
        )

    counts = grouped_while_unchanged(f"failures-{limit}", campaign, failed, group)
    return [(code, n, ERROR_EXPLANATIONS.get(code, "")) for code, n in counts]


def status_in_words(campaign: Campaign, now: datetime | None = None) -> str:
    """The campaign's status as a sentence: who is being sent to now, whose window opens when."""
    label = campaign.get_status_display()
    if campaign.status != Status.IN_PROGRESS:
        return label
    now = now or timezone.now()
    queued: dict[str, int] = defaultdict(int)
    for tz, _, n in queued_by_zone_and_prefix(campaign):
        queued[tz] += n
    zones = sorted(queued.items(), key=lambda zone: -zone[1])[:4]
    if not zones:
        return f"{label} — waiting for the last results from the provider"
    sending, waiting = [], []
    for tz, _ in zones:
        if windows.is_open(now, campaign.weekly_hours, tz):
            sending.append(tz)
        else:
            opens = windows.next_open(now, campaign.weekly_hours, tz)
            if opens is not None:
                local = opens.astimezone(ZoneInfo(tz))
                waiting.append(f"{tz} window opens at {local:%H:%M} local ({local:%a})")
    parts = []
    if sending:
        parts.append(f"sending to {', '.join(sending)} recipients")
    parts += waiting
    return f"{label} — " + "; ".join(parts) if parts else label


def send_rate(campaign: Campaign, now: datetime | None = None) -> float:
    """Messages per minute over the last complete and current hour."""
    now = now or timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    recent = SendHour.objects.filter(campaign=campaign, hour__gte=hour - timedelta(hours=1))
    sent = recent.aggregate(n=Sum("count"))["n"] or 0
    minutes = 60 + now.minute + now.second / 60
    return sent / minutes


# ---------------------------------------------------------------- charts


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Bar]
    forecast_points: str
    max_value: int
    first_label: str
    last_label: str
    summary: str


def sends_per_hour_chart(
    campaign: Campaign, forecast: list[tuple[datetime, int]] | None = None, *, hours: int = 48
) -> Chart | None:
    """Bars of sends per hour (last `hours` with sends) and the forecast's line after them."""
    rows = list(SendHour.objects.filter(campaign=campaign).order_by("-hour")[:hours])[::-1]
    planned = (forecast or [])[:24]
    if not rows and not planned:
        return None
    series = [(r.hour, r.count, False) for r in rows] + [(h, n, True) for h, n in planned]
    width, height, pad = 640, 180, 24
    slot = (width - 2 * pad) / max(len(series), 1)
    top = max(n for _, n, _ in series) or 1
    bars, points = [], []
    zone = campaign.org.tz
    for i, (hour, n, is_forecast) in enumerate(series):
        h = (height - 2 * pad) * n / top
        x = pad + i * slot
        label = hour.astimezone(zone).strftime("%a %H:00")
        if is_forecast:
            points.append(f"{x + slot / 2:.1f},{height - pad - h:.1f}")
        else:
            bars.append(Bar(x, height - pad - h, max(slot - 2, 1), h, label, n))
    total = sum(n for _, n, f in series if not f)
    return Chart(
        width=width,
        height=height,
        bars=bars,
        forecast_points=" ".join(points),
        max_value=top,
        first_label=series[0][0].astimezone(zone).strftime("%a %d %b %H:00"),
        last_label=series[-1][0].astimezone(zone).strftime("%a %d %b %H:00"),
        summary=f"{total} sent over {len(rows)} hours"
        + (
            f"; {sum(n for _, n in planned)} planned in the next {len(planned)} hours"
            if planned
            else ""
        ),
    )


@dataclass
class Segment:
    status: str
    label: str
    count: int
    share: float  # of 100
    offset: float  # where it starts, of 100


def status_breakdown(counts: dict[str, int]) -> list[Segment]:
    """One segment per status present, laid end to end, for a stacked bar."""
    total = sum(counts.values())
    segments, offset = [], 0.0
    for status, n in counts.items():
        if n and total:
            share = 100 * n / total
            segments.append(Segment(status, MessageStatus(status).label, n, share, offset))
            offset += share
    return segments


def org_sends_today(org_id: int, start: datetime) -> dict[str, int]:
    """Messages handed to providers since `start` (the organization's local midnight)."""
    rows = (
        SendHour.objects.filter(campaign__org_id=org_id, hour__gte=start)
        .values_list("campaign__channel")
        .annotate(n=Sum("count"))
        .order_by()
    )
    found = dict(rows)
    return {label: found.get(value, 0) for value, label in Channel.choices}
