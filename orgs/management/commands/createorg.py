import secrets

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from orgs.models import Role
from orgs.services import membership_grant, org_ensure, user_ensure


class Command(BaseCommand):
    help = "Creates an organization and its first Administrator; running it again changes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Short unique name used in URLs, e.g. acme")
        parser.add_argument("--name", help="Display name (default: the slug)")
        parser.add_argument("--timezone", default="America/New_York")
        parser.add_argument("--region", default="US", help="Default phone region, e.g. US")
        parser.add_argument("--admin", required=True, help="Username of the first Administrator")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password", help="Password for a new user (default: generated and printed)"
        )

    @transaction.atomic
    def handle(self, *args: object, **opts: str) -> None:
        try:
            org = org_ensure(
                slug=opts["slug"],
                name=opts["name"] or opts["slug"],
                timezone=opts["timezone"],
                default_region=opts["region"].upper(),
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        is_new_user = not get_user_model().objects.filter(username=opts["admin"]).exists()
        password = opts["password"] or (secrets.token_urlsafe(12) if is_new_user else None)
        user = user_ensure(username=opts["admin"], email=opts["email"], password=password)
        membership_grant(org=org, user=user, role=Role.ADMIN)
        self.stdout.write(
            f"Organization {org.slug!r} ({org.name}); Administrator {user.username!r}"
        )
        if password and not opts["password"]:
            self.stdout.write(f"Generated password: {password}")
