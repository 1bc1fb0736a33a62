from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "orgs"
    verbose_name = "Organizations"

    def ready(self) -> None:
        # The project's own system checks; orgs is the app every other app depends on.
        from outreach_site import checks  # noqa: F401
