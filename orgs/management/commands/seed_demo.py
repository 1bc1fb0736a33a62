from django.core.management.base import BaseCommand
from django.db import transaction

from orgs.models import Role
from orgs.services import membership_grant, org_ensure, user_ensure

DEMO_PASSWORD = "outreach-demo"


class Command(BaseCommand):
    help = "Creates the demo organization with an Administrator and a Viewer (for local use only)."

    @transaction.atomic
    def handle(self, *args: object, **opts: object) -> None:
        org = org_ensure(
            slug="demo", name="Demo Company", timezone="America/New_York", default_region="US"
        )
        for username, role in (("demo-admin", Role.ADMIN), ("demo-viewer", Role.VIEWER)):
            user = user_ensure(
                username=username, email=f"{username}@example.com", password=DEMO_PASSWORD
            )
            membership_grant(org=org, user=user, role=role)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo organization '{org.name}': log in as demo-admin (Administrator) or "
                f"demo-viewer (Viewer), password {DEMO_PASSWORD}"
            )
        )
