"""Settings come from the environment and fail loudly; production settings pass check --deploy."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from delivery.sandbox import generate_sendgrid_keypair

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "x7#kq!2vN9$Lm4pR8wT1zY6bC3fH5jD0sA-gE+uI&oP*eW(rQ)tU_yV^nM@lK%z",
    "ALLOWED_HOSTS": "outreach.example.com",
    "PUBLIC_BASE_URL": "https://outreach.example.com",
    "DATABASE_URL": "postgres://outreach@db:5432/outreach",
    "REDIS_URL": "redis://redis:6379/0",
    "DELIVERY_BACKEND": "live",
    "TWILIO_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef",
    "TWILIO_AUTH_TOKEN": "0123456789abcdef0123456789abcdef",
    "SENDGRID_API_KEY": "SG.live-key",
    "SENDGRID_WEBHOOK_PUBLIC_KEY": generate_sendgrid_keypair()[1],
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return _run("manage.py", *args, **env)


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return _run("-c", code, **env)


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    # The browser tests allow Django's async-unsafe calls in their own process only.
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in PRODUCTION and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_passes_the_deployment_checklist_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    "start",
    [
        lambda env: manage("check", "--deploy", **env),
        lambda env: _python("import outreach_site.wsgi", **env),
        lambda env: _python("import outreach_site.asgi", **env),
        lambda env: _python(
            "from celery.signals import worker_init; import outreach_site; "
            "worker_init.send(sender=None)",
            **env,
        ),
    ],
    ids=["check --deploy", "wsgi", "asgi", "celery worker"],
)
def test_it_refuses_to_start_without_a_secret_key_in_production(start):
    result = start({**PRODUCTION, "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_schema_commands_run_on_a_bare_checkout_without_a_secret_key():
    # Nothing set at all, as on a fresh clone: inspecting migrations must still work.
    result = manage("makemigrations", "--check", "--dry-run", DEBUG="false")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEBUG", "maybe", "DEBUG must be true or false, not 'maybe'"),
        ("DELIVERY_BACKEND", "carrier-pigeon", "DELIVERY_BACKEND must be one of sandbox, live"),
        ("PUBLIC_BASE_URL", "outreach.example.com", "PUBLIC_BASE_URL must start with http"),
        ("EMAIL_PORT", "twenty-five", "EMAIL_PORT must be an integer"),
    ],
)
def test_it_fails_loudly_on_a_bad_value(name, value, message):
    result = manage("check", **{**PRODUCTION, name: value})
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "SENDGRID_WEBHOOK_PUBLIC_KEY must be set when DELIVERY_BACKEND=live"),
        ("not-a-key", "SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key"),
    ],
    ids=["missing", "malformed"],
)
def test_it_refuses_live_delivery_without_a_usable_sendgrid_webhook_key(value, message):
    # Otherwise every signed SendGrid event would be refused: bounces and unsubscribes lost.
    result = _python(
        "import outreach_site.wsgi", **{**PRODUCTION, "SENDGRID_WEBHOOK_PUBLIC_KEY": value}
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_it_refuses_live_delivery_with_sandbox_credentials():
    env = {**PRODUCTION, "TWILIO_AUTH_TOKEN": ""}
    result = manage("check", **env)
    assert "TWILIO_AUTH_TOKEN must be set when DELIVERY_BACKEND=live" in result.stderr
