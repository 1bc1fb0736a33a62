from django.urls import path

from delivery import views, webhook_urls

app_name = "delivery"

urlpatterns = [
    path("contacts/", views.contact_list, name="contact_list"),
    path("contacts/<id:contact_id>/", views.contact_timeline_page, name="contact_timeline"),
    path("opt-outs/", views.suppression_list, name="suppression_list"),
    path("opt-outs/new/", views.suppression_create, name="suppression_create"),
    path("opt-outs/import/", views.suppression_import, name="suppression_import"),
    path(
        "opt-outs/<id:suppression_id>/delete/",
        views.suppression_delete,
        name="suppression_delete",
    ),
    path(
        "campaigns/<id:campaign_id>/messages/",
        views.campaign_messages_page,
        name="campaign_messages",
    ),
    path(
        "campaigns/<id:campaign_id>/messages.csv",
        views.campaign_messages_export,
        name="campaign_messages_export",
    ),
    path("campaigns/<id:campaign_id>/live/", views.campaign_live, name="campaign_live"),
    path("campaigns/export.csv", views.campaigns_export, name="campaigns_export"),
    path("u/<str:token>/", views.unsubscribe, name="unsubscribe"),
    # Served by WebhookMiddleware; listed here too so that they reverse like every route.
    *webhook_urls.urlpatterns,
]
