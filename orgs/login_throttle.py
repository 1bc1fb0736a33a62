"""Login throttling: after repeated failures from one client address, refuse logins for a while.

Keyed on the real client address: REMOTE_ADDR, or the address our own proxies saw when
TRUSTED_PROXY_COUNT says how many of them append to X-Forwarded-For (a client cannot spoof it).
"""

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse


def client_address(request: HttpRequest) -> str:
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [a for a in forwarded if a]
        # Each trusted proxy appended one address; the one before them is the client's.
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "")


def _key(address: str) -> str:
    return f"outreach:login-failures:{address}"


def failures(address: str) -> int:
    return cache.get(_key(address), 0)


def record_failure(address: str) -> None:
    key = _key(address)
    cache.add(key, 0, timeout=settings.LOGIN_LOCKOUT_SECONDS)
    try:
        cache.incr(key)
    except ValueError:
        cache.set(key, 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)


def clear(address: str) -> None:
    cache.delete(_key(address))


class ThrottledLoginView(LoginView):
    """Django's login view, locked for a client address after too many failed attempts."""

    def dispatch(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        self.address = client_address(request)
        if request.method == "POST" and failures(self.address) >= settings.LOGIN_MAX_FAILURES:
            minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
            lockout = (
                f"Too many failed log-in attempts from your address. Try again in {minutes} "
                "minutes, or reset your password."
            )
            context = self.get_context_data(form=self.get_form_class()(request), lockout=lockout)
            return self.render_to_response(context, status=429)
        return super().dispatch(request, *args, **kwargs)

    def form_invalid(self, form: object) -> HttpResponse:
        record_failure(self.address)
        return super().form_invalid(form)

    def form_valid(self, form: object) -> HttpResponse:
        clear(self.address)
        return super().form_valid(form)
