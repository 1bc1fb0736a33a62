"""Password reset that tells nobody which emails have accounts, rate-limited per client address
and per email.

The request only counts and queues; looking the email up and mailing happen in a Celery task, so
a known and an unknown email get the same page after the same work (in the embedded run, whose
tasks run inline, the mail is still sent during the request).
"""

from hashlib import sha256

from django.conf import settings
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.views import PasswordResetView
from django.core.cache import cache
from django.http import HttpResponse, HttpResponseRedirect

from orgs.login_throttle import client_address
from orgs.tasks import password_reset_send

WINDOW_SECONDS = 3600
THROTTLED = "Too many password reset requests. Try again in an hour."


def _spent(key: str, limit: int) -> bool:
    """Counts one request against the key's hourly allowance; True once it is used up."""
    cache.add(key, 0, timeout=WINDOW_SECONDS)
    try:
        count = cache.incr(key)
    except ValueError:  # the window ended between the two calls
        cache.set(key, 1, timeout=WINDOW_SECONDS)
        count = 1
    return count > limit


def password_reset_request(*, email: str, address: str, domain: str, use_https: bool) -> bool:
    """Queues the reset mail for the email, unless the address or the email asked too often in
    the last hour (False then). Unknown emails are counted and queued exactly like known ones."""
    # Hashed: the cache holds no email addresses; lowercased: accounts are found case-insensitively.
    digest = sha256(email.strip().lower().encode()).hexdigest()
    if _spent(
        f"outreach:password-reset:address:{address}", settings.PASSWORD_RESET_MAX_PER_ADDRESS
    ) or _spent(f"outreach:password-reset:email:{digest}", settings.PASSWORD_RESET_MAX_PER_EMAIL):
        return False
    password_reset_send.delay_on_commit(email=email, domain=domain, use_https=use_https)
    return True


class ThrottledPasswordResetView(PasswordResetView):
    """Django's reset form and pages; the mail goes through `password_reset_request`."""

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        queued = password_reset_request(
            email=form.cleaned_data["email"],
            address=client_address(self.request),
            domain=self.request.get_host(),
            use_https=self.request.is_secure(),
        )
        if not queued:
            context = self.get_context_data(form=form, throttled=THROTTLED)
            return self.render_to_response(context, status=429)
        return HttpResponseRedirect(self.get_success_url())
