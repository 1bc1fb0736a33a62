"""Provider webhooks take a short way through the middleware."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

WEBHOOK_PREFIX = "/webhooks/"


class WebhookMiddleware:
    """Serves provider webhooks without the browser-facing middleware after this one.

    A webhook has no session, user, organization, CSRF token, flash message or page to frame,
    and answers providers that post thousands of callbacks a second: sessions, authentication,
    CSRF, messages, htmx and the CSP header cost it a third of its time (bench/webhook_bench.py).
    It sits after SecurityMiddleware, so HTTPS redirects and HSTS still apply.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(WEBHOOK_PREFIX):
            try:
                match = resolve(request.path_info, urlconf="delivery.webhook_urls")
            except Resolver404:
                return self.get_response(request)
            return match.func(request, *match.args, **match.kwargs)
        return self.get_response(request)
