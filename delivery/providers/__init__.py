"""Provider adapters behind one small interface: `send(batch) -> list[SendResult]`."""

from functools import lru_cache

from django.conf import settings

from delivery.providers.base import (
    Attachment,
    OutboundEmail,
    OutboundSms,
    ResultKind,
    SendResult,
)
from delivery.providers.sendgrid_email import SendGridEmailProvider
from delivery.providers.twilio_sms import TwilioSmsProvider

__all__ = [
    "Attachment",
    "OutboundEmail",
    "OutboundSms",
    "ResultKind",
    "SendGridEmailProvider",
    "SendResult",
    "TwilioSmsProvider",
    "get_email_provider",
    "get_sms_provider",
]


def get_sms_provider() -> TwilioSmsProvider:
    """The SMS provider the settings describe (the sandbox or Twilio), shared per process."""
    return _sms_provider(
        settings.TWILIO_ACCOUNT_SID,
        settings.TWILIO_AUTH_TOKEN,
        settings.TWILIO_API_BASE_URL,
        float(settings.PROVIDER_TIMEOUT_SECONDS),
    )


def get_email_provider() -> SendGridEmailProvider:
    """The email provider the settings describe (the sandbox or SendGrid), shared per process."""
    return _email_provider(
        settings.SENDGRID_API_KEY,
        settings.SENDGRID_API_HOST,
        float(settings.PROVIDER_TIMEOUT_SECONDS),
    )


# Keyed by the settings themselves, so a test that overrides them gets a matching provider while
# a worker keeps reusing one pooled client (and its open connections) across batches.
@lru_cache(maxsize=4)
def _sms_provider(sid: str, token: str, base_url: str, timeout: float) -> TwilioSmsProvider:
    return TwilioSmsProvider(sid, token, base_url, timeout)


@lru_cache(maxsize=4)
def _email_provider(api_key: str, host: str, timeout: float) -> SendGridEmailProvider:
    return SendGridEmailProvider(api_key, host, timeout)
