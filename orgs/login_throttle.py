"""Login throttling for every login form, through django-axes (configured in settings.py).

Axes refuses an `authenticate()` call (console login, Django admin, anything else) once its
(client address, username) has failed LOGIN_MAX_FAILURES times; this module adds what axes leaves
to its users: the real client address, a higher ceiling for one address across all usernames,
and our own login page as the answer to a locked-out attempt.
"""

from datetime import timedelta

from axes.handlers.cache import AxesCacheHandler
from axes.helpers import get_cache_timeout, get_cool_off
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def client_address(request: HttpRequest) -> str:
    """REMOTE_ADDR, or the address our own proxies saw when TRUSTED_PROXY_COUNT says how many of
    them append to X-Forwarded-For (a client cannot spoof it)."""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [a for a in forwarded if a]
        # Each trusted proxy appended one address; the one before them is the client's.
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "")


class AddressCeilingCacheHandler(AxesCacheHandler):
    """Axes' cache handler plus a second, higher limit: LOGIN_MAX_FAILURES_PER_ADDRESS failures
    from one address, whatever the usernames, lock that address out too (a password spray).

    Axes compares every lockout parameter with the same AXES_FAILURE_LIMIT, so the two limits
    cannot both be lockout parameters; the per-address count is kept here beside axes' own.
    A successful log-in clears the username's count but not the address's: one account of the
    sprayer's own must not let the spray start over.
    """

    @staticmethod
    def _address_key(request: HttpRequest) -> str:
        return f"outreach:login-failures:{request.axes_ip_address}"

    def is_locked(self, request: HttpRequest, credentials: dict | None = None) -> bool:
        if super().is_locked(request, credentials):
            return True
        failures = self.cache.get(self._address_key(request), 0)
        return failures >= settings.LOGIN_MAX_FAILURES_PER_ADDRESS

    def user_login_failed(
        self,
        sender: object,
        credentials: dict,
        request: HttpRequest | None = None,
        **kwargs: object,
    ) -> None:
        # An attempt refused while locked out was never checked, so it counts for neither limit.
        already_locked = request is not None and request.axes_locked_out
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is None or already_locked:
            return
        key, timeout = self._address_key(request), get_cache_timeout(request)
        self.cache.add(key, 0, timeout=timeout)
        try:
            failures = self.cache.incr(key)
        except ValueError:  # expired between the two calls
            self.cache.set(key, 1, timeout=timeout)
            failures = 1
        self.cache.touch(key, timeout=timeout)
        if failures >= settings.LOGIN_MAX_FAILURES_PER_ADDRESS:
            # What axes sets when its own limit is reached: AxesMiddleware answers with the lockout.
            request.axes_locked_out = True
            request.axes_credentials = credentials


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """Our login page saying why, with status 429: the answer of every locked-out login form."""
    cool_off = get_cool_off(request) or timedelta(seconds=0)
    minutes = max(1, round(cool_off.total_seconds() / 60))
    lockout = (
        f"Too many failed log-in attempts. Try again in {minutes} minute"
        f"{'' if minutes == 1 else 's'}, or reset your password."
    )
    context = {"form": AuthenticationForm(request), "lockout": lockout}
    return render(request, "registration/login.html", context, status=429)
