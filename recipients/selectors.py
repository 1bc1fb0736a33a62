"""Reads that the recipient pages share; every one takes the organization or its campaign."""

from django.db.models import Count, QuerySet

from campaigns.models import Campaign
from recipients.models import ListStatus, RecipientList, RejectedUpload


def list_tabs(*, campaign: Campaign) -> list[tuple[ListStatus, int]]:
    """Each list status with how many of the campaign's lists are in it, in tab order."""
    counts = dict(
        RecipientList.objects.filter(campaign=campaign)
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    return [(status, counts.get(status.value, 0)) for status in ListStatus]


def lists_in_tab(*, campaign: Campaign, status: str) -> QuerySet[RecipientList]:
    return RecipientList.objects.filter(campaign=campaign, status=status).select_related(
        "created_by"
    )


def recent_rejections(*, campaign: Campaign, limit: int = 5) -> QuerySet[RejectedUpload]:
    return RejectedUpload.objects.filter(campaign=campaign).select_related("created_by")[:limit]
