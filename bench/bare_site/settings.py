"""Outreach's settings, with a URLconf of one view."""

from outreach_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bare_site.urls"
