"""Walks the URL configuration so that every console URL is checked for access rules.

A URL with an object id in it needs a way to make such an object in a given organization:
add it to OBJECT_IDS when an app adds such a URL (the walker fails for an unknown parameter).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver, reverse

from orgs.models import Organization
from tests import factories

# URL parameter name -> function making an object of that kind in an organization, returning
# the value to put in the URL.
OBJECT_IDS: dict[str, Callable[[Organization], Any]] = {
    "sender_id": lambda org: factories.SmsSenderFactory(org=org).pk,
    "template_id": lambda org: factories.EmailTemplateFactory(org=org).pk,
    "campaign_id": lambda org: factories.CampaignFactory(org=org).pk,
    "list_id": lambda org: factories.RecipientListFactory(campaign__org=org).pk,
    "rejected_id": lambda org: factories.RejectedUploadFactory(campaign__org=org).pk,
    "contact_id": lambda org: factories.ContactFactory(org=org).pk,
    "suppression_id": lambda org: factories.SuppressionFactory(org=org).pk,
}
# URL parameters that are not objects of an organization, with a value to use.
PLAIN_PARAMS: dict[str, str] = {"channel": "sms", "token": "not-a-token", "message_id": "1"}
# Django's admin and auth URLs (walked by the fuzz test, not the access tests), likewise.
DJANGO_PARAMS: dict[str, str] = {
    "object_id": "1",
    "content_type_id": "1",
    "id": "1",
    "app_label": "campaigns",
    "uidb64": "MQ",
    "token": "set-password",
}


@dataclass(frozen=True)
class Route:
    name: str
    params: tuple[str, ...]
    view: Callable

    @property
    def access(self) -> str | None:
        return getattr(self.view, "access", None)

    @property
    def ours(self) -> bool:
        return not self.view.__module__.startswith("django.")

    def url_for(self, org: Organization, objects: dict | None = None) -> str:
        """The URL with a new object of the organization for each id (from `objects` first)."""
        plain = PLAIN_PARAMS if self.ours else DJANGO_PARAMS
        makers = {**OBJECT_IDS, **(objects or {})}
        kwargs = {
            param: plain[param] if param in plain else makers[param](org) for param in self.params
        }
        return reverse(self.name, kwargs=kwargs)

    @property
    def has_objects(self) -> bool:
        return any(param in OBJECT_IDS for param in self.params)

    def __str__(self) -> str:
        return self.name


def _walk(patterns: list, namespace: str, params: tuple[str, ...]) -> list[Route]:
    routes = []
    for entry in patterns:
        found = tuple(entry.pattern.regex.groupindex)
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            routes += _walk(entry.url_patterns, ns, params + found)
        elif isinstance(entry, URLPattern) and entry.name:
            routes.append(Route(f"{namespace}{entry.name}", params + found, entry.callback))
    return routes


def all_routes() -> list[Route]:
    """Every named URL of the URL configuration: ours, Django's admin and auth views."""
    return _walk(get_resolver().url_patterns, "", ())


def console_routes() -> list[Route]:
    """Every named URL of our own apps (Django's admin and auth views are not ours to test)."""
    return [route for route in all_routes() if route.ours]
