from django.urls import path

from delivery import views, webhooks

app_name = "delivery"

urlpatterns = [
    path("contacts/", views.contact_list, name="contact_list"),
    path("contacts/<int:contact_id>/", views.contact_timeline_page, name="contact_timeline"),
    path("opt-outs/", views.suppression_list, name="suppression_list"),
    path("opt-outs/new/", views.suppression_create, name="suppression_create"),
    path("opt-outs/import/", views.suppression_import, name="suppression_import"),
    path(
        "opt-outs/<int:suppression_id>/delete/",
        views.suppression_delete,
        name="suppression_delete",
    ),
    path(
        "campaigns/<int:campaign_id>/messages/",
        views.campaign_messages_page,
        name="campaign_messages",
    ),
    path(
        "campaigns/<int:campaign_id>/messages.csv",
        views.campaign_messages_export,
        name="campaign_messages_export",
    ),
    path("campaigns/<int:campaign_id>/live/", views.campaign_live, name="campaign_live"),
    path("campaigns/export.csv", views.campaigns_export, name="campaigns_export"),
    path("u/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("webhooks/twilio/status/<int:message_id>/", webhooks.twilio_status, name="twilio_status"),
    path("webhooks/twilio/inbound/", webhooks.twilio_inbound, name="twilio_inbound"),
    path("webhooks/sendgrid/events/", webhooks.sendgrid_events, name="sendgrid_events"),
]
