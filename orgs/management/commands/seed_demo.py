from django.core.management.base import BaseCommand
from django.db import transaction

from orgs.models import Organization, Role
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
        _demo_content(org)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo organization '{org.name}': log in as demo-admin (Administrator) or "
                f"demo-viewer (Viewer), password {DEMO_PASSWORD}"
            )
        )


def _demo_content(org: Organization) -> None:
    """Senders and templates to start from, so a first campaign takes a minute (idempotent)."""
    from campaigns.models import Channel, MessageTemplate, RatePeriod, Sender

    Sender.objects.get_or_create(
        org=org,
        channel=Channel.SMS,
        label="Main line",
        defaults={
            "phone_number": "+14155550100",
            "inbox_name": "Front desk",
            "rate_limit": 5,
            "rate_period": RatePeriod.SECOND,
        },
    )
    Sender.objects.get_or_create(
        org=org,
        channel=Channel.EMAIL,
        label="News",
        defaults={
            "from_name": "Demo Company",
            "from_email": "news@example.com",
            "reply_to": "hello@example.com",
            "rate_limit": 50,
            "rate_period": RatePeriod.SECOND,
        },
    )
    MessageTemplate.objects.get_or_create(
        org=org,
        channel=Channel.SMS,
        name="Appointment reminder",
        language="en",
        defaults={
            "body": "Hi {{ first_name|there }}, a reminder of your appointment. Reply STOP "
            "to opt out."
        },
    )
    MessageTemplate.objects.get_or_create(
        org=org,
        channel=Channel.SMS,
        name="Recordatorio de cita",
        language="es",
        defaults={
            "body": "Hola {{ first_name|}}, le recordamos su cita. Responda STOP para no "
            "recibir más mensajes."
        },
    )
    html = (
        "<p>Hello {{ first_name|there }},</p><p>Here is our news.</p>"
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
    )
    MessageTemplate.objects.get_or_create(
        org=org,
        channel=Channel.EMAIL,
        name="Monthly news",
        language="en",
        defaults={
            "subject": "News for {{ first_name|you }}",
            "html_body": html,
            "text_body": "Hello {{ first_name|there }},\n\nHere is our news.\n\n"
            "Unsubscribe: {{ unsubscribe_url }}",
        },
    )
