from django.contrib.admin.apps import AdminConfig


class OutreachAdminConfig(AdminConfig):
    """Django's admin on our own site class (outreach_site/admin.py)."""

    default_site = "outreach_site.admin.OutreachAdminSite"
