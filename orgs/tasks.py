"""Celery tasks of the orgs app: the password reset mail, sent off the request path."""

from celery import shared_task
from django.contrib.auth.forms import PasswordResetForm


@shared_task(name="orgs.password_reset_send", ignore_result=True)
def password_reset_send(email: str, domain: str, use_https: bool) -> dict:
    """Mails a reset link to each active account using the email (to none for an unknown one)."""
    form = PasswordResetForm({"email": email})
    if form.is_valid():
        # The same mail Django's view sends: without the sites framework it names the host asked.
        form.save(domain_override=domain, use_https=use_https)
    # Nothing that tells whether the email is known: results and logs must not either.
    return {}
