from django.urls import path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("senders/", views.sender_list, name="sender_list"),
    path("senders/new/<str:channel>/", views.sender_create, name="sender_create"),
    path("senders/<id:sender_id>/edit/", views.sender_edit, name="sender_edit"),
    path("senders/<id:sender_id>/delete/", views.sender_delete, name="sender_delete"),
    path("message-templates/", views.template_list, name="template_list"),
    path("message-templates/new/<str:channel>/", views.template_create, name="template_create"),
    path("message-templates/<id:template_id>/", views.template_detail, name="template_detail"),
    path("message-templates/<id:template_id>/edit/", views.template_edit, name="template_edit"),
    path(
        "message-templates/<id:template_id>/preview.html",
        views.template_html_preview,
        name="template_html_preview",
    ),
    path(
        "message-templates/<id:template_id>/delete/",
        views.template_delete,
        name="template_delete",
    ),
    path("campaigns/", views.campaign_list, name="campaign_list"),
    path("campaigns/new/", views.campaign_choose_channel, name="campaign_choose_channel"),
    path("campaigns/new/<str:channel>/", views.campaign_create, name="campaign_create"),
    path("campaigns/<id:campaign_id>/", views.campaign_detail, name="campaign_detail"),
    path("campaigns/<id:campaign_id>/edit/", views.campaign_edit, name="campaign_edit"),
    path("campaigns/<id:campaign_id>/delete/", views.campaign_delete, name="campaign_delete"),
    path("campaigns/<id:campaign_id>/run/", views.campaign_run, name="campaign_run"),
    path("campaigns/<id:campaign_id>/schedule/", views.campaign_schedule, name="campaign_schedule"),
    path(
        "campaigns/<id:campaign_id>/unschedule/",
        views.campaign_unschedule,
        name="campaign_unschedule",
    ),
    path("campaigns/<id:campaign_id>/pause/", views.campaign_pause, name="campaign_pause"),
    path("campaigns/<id:campaign_id>/resume/", views.campaign_resume, name="campaign_resume"),
    path("campaigns/<id:campaign_id>/stop/", views.campaign_stop, name="campaign_stop"),
    path("campaigns/<id:campaign_id>/retry/", views.campaign_retry, name="campaign_retry"),
    path(
        "campaigns/<id:campaign_id>/retry-unconfirmed/",
        views.campaign_retry_unconfirmed,
        name="campaign_retry_unconfirmed",
    ),
    path(
        "campaigns/<id:campaign_id>/reconcile/",
        views.campaign_reconcile,
        name="campaign_reconcile",
    ),
]
