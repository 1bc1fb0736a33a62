from django.urls import path

from orgs import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("org/switch/", views.switch_org, name="switch_org"),
    path("org/settings/", views.org_settings, name="org_settings"),
    path("org/settings/edit/", views.org_settings_edit, name="org_settings_edit"),
]
