"""The local sandbox provider: Twilio's and SendGrid's send APIs, with signed callbacks."""

from delivery.sandbox.server import (
    MESSAGING_SERVICE_NUMBER,
    TWILIO_ERROR_SUFFIXES,
    SandboxConfig,
    SandboxProvider,
    email_outcome,
    generate_sendgrid_keypair,
    load_or_create_keypair,
    message_id_from_callback,
    public_key_b64,
    render_personalization,
    sms_outcome,
)

__all__ = [
    "MESSAGING_SERVICE_NUMBER",
    "TWILIO_ERROR_SUFFIXES",
    "SandboxConfig",
    "SandboxProvider",
    "email_outcome",
    "generate_sendgrid_keypair",
    "load_or_create_keypair",
    "message_id_from_callback",
    "public_key_b64",
    "render_personalization",
    "sms_outcome",
]
