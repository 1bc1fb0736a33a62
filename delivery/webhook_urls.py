"""The provider webhooks' routes, also resolved on their own by `WebhookMiddleware`."""

from django.urls import path

from delivery import webhooks

urlpatterns = [
    path("webhooks/twilio/status/<id:message_id>/", webhooks.twilio_status, name="twilio_status"),
    path("webhooks/twilio/inbound/", webhooks.twilio_inbound, name="twilio_inbound"),
    path("webhooks/sendgrid/events/", webhooks.sendgrid_events, name="sendgrid_events"),
]
