"""Outreach settings: every value a deployment changes comes from the environment (see README)."""

import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from outreach_site.env import (
    env_bool,
    env_choice,
    env_ec_public_key,
    env_int,
    env_list,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
# Without a key in production only schema commands run: web, worker, beat and check --deploy
# refuse to start (outreach_site/checks.py).
SECRET_KEY_MISSING = not SECRET_KEY and not DEBUG
if not SECRET_KEY:
    # Development: a fixed key keeps sessions alive across restarts of the embedded run.
    # Otherwise a throwaway one, so that nothing is ever signed with a known key.
    SECRET_KEY = (
        "dev-only-insecure-key-outreach-embedded-run-not-for-production"
        if DEBUG
        else secrets.token_urlsafe(50)
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
PUBLIC_BASE_URL = env_url("PUBLIC_BASE_URL", "http://127.0.0.1:8000")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [PUBLIC_BASE_URL])

INSTALLED_APPS = [
    "outreach_site.apps.OutreachAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "django_htmx",
    "csp",
    "orgs",
    "campaigns",
    "recipients",
    "delivery",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "delivery.middleware.WebhookMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "orgs.parsing.RefuseNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "orgs.middleware.OrgMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as axes asks: it turns a locked-out log-in into our page (AXES_LOCKOUT_CALLABLE).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "outreach_site.urls"
WSGI_APPLICATION = "outreach_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "orgs.context_processors.current_org",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'outreach.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
    )
}
# Behind PgBouncer in transaction mode a connection's server-side cursor may land on another
# server connection: Django then reads iterators with client-side cursors.
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env_bool("DATABASE_BEHIND_POOLER", False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded run has a web process and a worker writing one file: wait instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Axes first: a locked-out attempt is refused before any password is checked, on every login form.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
# Every instant is stored in UTC; local time is computed per recipient or per organization.
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Collected files exist only in production; in development the finders serve static/ directly.
STATIC_ROOT = None if DEBUG else Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
MEDIA_URL = "media/"

# Mail (password reset, later notifications): the console in development, SMTP otherwise.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Outreach <outreach@localhost>")

# Security: production values switch on whenever DEBUG is off.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    # Behind a TLS-terminating proxy (docker-compose, load balancers) the scheme arrives here.
    if env_bool("BEHIND_TLS_PROXY", True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# No inline script or style anywhere in the console: everything comes from our static files.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "frame-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

# Background work: Celery on Redis in production; without REDIS_URL (the embedded run, tests
# on a bare machine) tasks run inline and the embedded worker ticks the beat schedule.
REDIS_URL = env_str("REDIS_URL")
CELERY_BROKER_URL = REDIS_URL or "memory://"
# The cache holds login-failure and password-reset counters: shared in Redis, per process in the
# embedded run.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}
# Login throttling (django-axes, orgs/login_throttle.py): an (address, username) pair is locked
# after LOGIN_MAX_FAILURES failures, an address after LOGIN_MAX_FAILURES_PER_ADDRESS whatever the
# usernames, each for LOGIN_LOCKOUT_SECONDS after its last failure.
# Counted in the cache rather than axes' tables: the counters expire on their own, and a failed
# log-in costs no database write.
AXES_HANDLER = "orgs.login_throttle.AddressCeilingCacheHandler"
AXES_LOCKOUT_PARAMETERS = [["ip_address", "username"]]
AXES_FAILURE_LIMIT = env_int("LOGIN_MAX_FAILURES", 5, minimum=1)
LOGIN_MAX_FAILURES_PER_ADDRESS = env_int("LOGIN_MAX_FAILURES_PER_ADDRESS", 30, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("LOGIN_LOCKOUT_SECONDS", 900, minimum=60))
# Attempts refused while locked out do not extend the lockout: the time the page names is true.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "orgs.login_throttle.client_address"
AXES_LOCKOUT_CALLABLE = "orgs.login_throttle.lockout_response"
# Axes' admin pages list its database records, which the cache handler never writes.
AXES_ENABLE_ADMIN = False
# How many reverse proxies of ours append to X-Forwarded-For (0: trust only REMOTE_ADDR).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
# Password reset requests allowed per hour from one client address, and for one email address.
PASSWORD_RESET_MAX_PER_ADDRESS = env_int("PASSWORD_RESET_MAX_PER_ADDRESS", 10, minimum=1)
PASSWORD_RESET_MAX_PER_EMAIL = env_int("PASSWORD_RESET_MAX_PER_EMAIL", 3, minimum=1)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged only after it finished, and re-queued if its worker dies, so no batch is
# silently dropped; the sending engine's database claims make the re-run harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One task at a time per worker process: a prefetched batch would sit behind a slow one.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis re-delivers an unacknowledged task after this long; it must exceed the longest task.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The dispatcher's tick runs inside the beat, never queued behind sends (outreach_site/beat.py).
CELERY_BEAT_SCHEDULER = "outreach_site.beat:Scheduler"
# Sending tasks kept running while messages wait in the ready queue (delivery/ready.py): each
# takes whatever may go now, for any sender. At least the workers' total concurrency, or some
# worker slots stay idle while messages wait; more only queue behind the running ones.
SEND_TASKS = env_int("SEND_TASKS", 8, minimum=1)
# The dispatcher ticks this often (seconds) and claims one tick's worth of each sender's rate.
DISPATCH_TICK_SECONDS = env_int("DISPATCH_TICK_SECONDS", 2, minimum=1)
# How long a message handed to the provider may stay "sending" without a recorded result before
# it becomes "unknown" (the hand-over lease).
DISPATCH_LEASE_SECONDS = env_int("DISPATCH_LEASE_SECONDS", 300, minimum=5)
# How long a claim may wait in a worker before it is handed over; a dead worker's claims go back
# to the queue after this (plus a slow sender's interval between two messages).
DISPATCH_CLAIM_LEASE_SECONDS = env_int("DISPATCH_CLAIM_LEASE_SECONDS", 60, minimum=5)
# An SMS accepted by the provider with no final status after this long is assumed delivered.
ASSUMED_DELIVERED_AFTER_HOURS = env_int("ASSUMED_DELIVERED_AFTER_HOURS", 24)

# Providers.
DELIVERY_BACKEND = env_choice("DELIVERY_BACKEND", "sandbox", ("sandbox", "live"))
SANDBOX_URL = env_url("SANDBOX_URL", "http://127.0.0.1:8025")
# The sandbox signs its SendGrid-style events with this key; in sandbox mode the web process
# reads its public half when SENDGRID_WEBHOOK_PUBLIC_KEY is not set.
SANDBOX_KEY_FILE = env_str("SANDBOX_KEY_FILE", str(BASE_DIR / "var" / "sandbox-sendgrid-key.pem"))
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID", "ACsandbox00000000000000000000000000")
TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN", "sandbox-auth-token")
TWILIO_API_BASE_URL = env_url(
    "TWILIO_API_BASE_URL", SANDBOX_URL if DELIVERY_BACKEND == "sandbox" else ""
)
SENDGRID_API_KEY = env_str("SENDGRID_API_KEY", "SG.sandbox-key")
SENDGRID_API_HOST = env_url(
    "SENDGRID_API_HOST",
    SANDBOX_URL if DELIVERY_BACKEND == "sandbox" else "https://api.sendgrid.com",
)
SENDGRID_WEBHOOK_PUBLIC_KEY = env_ec_public_key("SENDGRID_WEBHOOK_PUBLIC_KEY")
PROVIDER_TIMEOUT_SECONDS = env_int("PROVIDER_TIMEOUT_SECONDS", 10, minimum=1)
if DELIVERY_BACKEND == "live" and not DEBUG:
    # Without the webhook key every SendGrid event would be refused, so bounces and
    # unsubscribes would silently never arrive: refuse to start instead.
    for _name in (
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "SENDGRID_API_KEY",
        "SENDGRID_WEBHOOK_PUBLIC_KEY",
    ):
        if not globals()[_name] or globals()[_name].startswith(
            ("ACsandbox", "sandbox", "SG.sandbox")
        ):
            raise ImproperlyConfigured(f"{_name} must be set when DELIVERY_BACKEND=live.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
}
