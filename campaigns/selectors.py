"""Reads that the campaign pages share; every one takes the organization."""

from django.db.models import Q, QuerySet

from campaigns.models import ActivityEntry, Campaign, Channel, Status
from orgs.models import Organization


def campaigns_for_list(
    *, org: Organization, status: str = "", channel: str = "", search: str = ""
) -> QuerySet[Campaign]:
    """The organization's campaigns, filtered as the list page asks, newest first."""
    campaigns = Campaign.objects.filter(org=org).select_related("sender", "template")
    if status in Status.values:
        campaigns = campaigns.filter(status=status)
    if channel in Channel.values:
        campaigns = campaigns.filter(channel=channel)
    if search:
        campaigns = campaigns.filter(Q(name__icontains=search) | Q(description__icontains=search))
    return campaigns.order_by("-created_at", "-id")


def campaign_activity(*, campaign: Campaign, limit: int = 50) -> QuerySet[ActivityEntry]:
    return campaign.activity.select_related("actor")[:limit]
