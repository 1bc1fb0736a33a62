"""factory_boy factories for every model, in one place."""

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from campaigns.models import Campaign, Channel, MessageTemplate, RatePeriod, Sender, Status
from delivery.models import Message, Suppression, SuppressionReason
from orgs.models import Membership, Organization, Role
from recipients.models import Contact, RecipientList, RejectedUpload

TEST_PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password(TEST_PASSWORD)


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")
    timezone = "America/New_York"
    default_region = "US"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    org = factory.SubFactory(OrganizationFactory)
    role = Role.ADMIN


class SmsSenderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sender

    org = factory.SubFactory(OrganizationFactory)
    channel = Channel.SMS
    label = factory.Sequence(lambda n: f"Clinic line {n}")
    phone_number = factory.Sequence(lambda n: f"+1212555{n % 10000:04d}")
    inbox_name = "Front desk"
    rate_limit = 1
    rate_period = RatePeriod.SECOND


class EmailSenderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sender

    org = factory.SubFactory(OrganizationFactory)
    channel = Channel.EMAIL
    label = factory.Sequence(lambda n: f"Newsletter {n}")
    from_name = "Acme Health"
    from_email = factory.Sequence(lambda n: f"news{n}@acme.example")
    rate_limit = 100
    rate_period = RatePeriod.SECOND


class SmsTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MessageTemplate

    org = factory.SubFactory(OrganizationFactory)
    channel = Channel.SMS
    name = factory.Sequence(lambda n: f"Reminder {n}")
    language = "en"
    body = "Hi {{ first_name|there }}, your appointment is tomorrow. Reply STOP to opt out."


class EmailTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MessageTemplate

    org = factory.SubFactory(OrganizationFactory)
    channel = Channel.EMAIL
    name = factory.Sequence(lambda n: f"Newsletter {n}")
    language = "en"
    subject = "News for {{ first_name|you }}"
    html_body = '<p>Hello {{ name }}</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
    text_body = "Hello {{ name }}\n\nUnsubscribe ({{ unsubscribe_url }})"


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    org = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Campaign {n}")
    channel = Channel.SMS
    sender = factory.LazyAttribute(
        lambda c: (SmsSenderFactory if c.channel == Channel.SMS else EmailSenderFactory)(org=c.org)
    )
    template = factory.LazyAttribute(
        lambda c: (SmsTemplateFactory if c.channel == Channel.SMS else EmailTemplateFactory)(
            org=c.org
        )
    )
    language = "en"
    schedule = factory.LazyFunction(lambda: {str(d): ["09:00", "17:00"] for d in range(5)})
    status = Status.READY


class RecipientListFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RecipientList

    campaign = factory.SubFactory(CampaignFactory)
    org = factory.SelfAttribute("campaign.org")
    file_name = factory.Sequence(lambda n: f"patients-{n}.csv")
    start_at = factory.LazyFunction(timezone.now)


class RejectedUploadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RejectedUpload

    campaign = factory.SubFactory(CampaignFactory)
    org = factory.SelfAttribute("campaign.org")
    file_name = "broken.csv"
    summary = factory.LazyFunction(lambda: {"Invalid phone number": 1})
    error_count = 1
    error_log = factory.django.FileField(
        filename="log.csv", data=b"reason,line,phone_number\r\nInvalid phone number,2,12\r\n"
    )


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    org = factory.SubFactory(OrganizationFactory)
    address = factory.Sequence(lambda n: f"+1212555{n:04d}")
    name = "Ana García"
    timezone = "America/New_York"


class SuppressionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Suppression

    org = factory.SubFactory(OrganizationFactory)
    address = factory.Sequence(lambda n: f"+1415555{n:04d}")
    reason = SuppressionReason.MANUAL


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    recipient_list = factory.SubFactory(RecipientListFactory)
    campaign = factory.SelfAttribute("recipient_list.campaign")
    org = factory.SelfAttribute("recipient_list.org")
    contact = factory.SubFactory(ContactFactory, org=factory.SelfAttribute("..org"))
    address = factory.SelfAttribute("contact.address")
    name = factory.SelfAttribute("contact.name")
    timezone = "America/New_York"
    variables = factory.LazyAttribute(lambda m: {"name": m.name, "first_name": m.name.split()[0]})
    line = factory.Sequence(lambda n: n + 2)
