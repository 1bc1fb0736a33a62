from django.apps import AppConfig
from django.urls import register_converter

from orgs.parsing import IdConverter


class OrgsConfig(AppConfig):
    name = "orgs"
    verbose_name = "Organizations"

    def ready(self) -> None:
        # The project's own system checks; orgs is the app every other app depends on.
        from outreach_site import checks  # noqa: F401

        # `<id:…>` in every urls.py; registered before any URL configuration is loaded.
        register_converter(IdConverter, "id")
