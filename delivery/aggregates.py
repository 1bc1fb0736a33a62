"""Groupings of a campaign's messages that read many rows, cached while their counts stand still.

A grouping of the queued or the failed messages reads every one of them (300,000 rows take half
a second), and the campaign page asks for it every few seconds while it is open. The counters
(MessageCount, exact and cheap to read) say whether anything in those statuses changed: the
cache key carries their total, so any change is a new key and the answer is never stale for
longer than a change in which one message leaves and another enters at the same moment.
"""

from collections.abc import Callable, Iterable

from django.core.cache import cache
from django.db.models import Sum

from campaigns.models import Campaign
from delivery.models import MessageCount
from recipients.models import RecipientList

CACHE_SECONDS = 600


def grouped_while_unchanged(
    name: str,
    campaign: Campaign,
    statuses: Iterable[str],
    compute: Callable[[], list[tuple]],
    *,
    recipient_list: RecipientList | None = None,
) -> list[tuple]:
    """compute() — or its cached answer, while the campaign's count in `statuses` is the same."""
    counts = MessageCount.objects.filter(campaign=campaign, status__in=list(statuses))
    if recipient_list is not None:
        counts = counts.filter(recipient_list=recipient_list)
    total = counts.aggregate(n=Sum("count"))["n"] or 0
    if not total:
        return []
    # created_at keeps keys apart when a database reuses ids (tests, a restored backup).
    key = (
        f"grouped:{name}:{campaign.pk}:{campaign.created_at.timestamp()}:"
        f"{recipient_list.pk if recipient_list else ''}:{total}"
    )
    rows = cache.get(key)
    if rows is None:
        rows = [tuple(row) for row in compute()]
        cache.set(key, rows, CACHE_SECONDS)
    return rows
