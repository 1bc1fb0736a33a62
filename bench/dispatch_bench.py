"""Release rate: queued messages through dispatch_tick and send_batch, the real SDKs and the
sandbox, beside the same SDK calls in a plain loop against the same sandbox.

Run: .venv/bin/python -m bench.dispatch_bench [--quick]

The sandbox runs in a child process (bench/sandbox.py). The throttle is the real one, in Redis
database 14, at a sender rate far above what we reach, so that it paces nothing: the figure is
what the engine itself costs per message on top of the SDK call. Each tick claims what a 2 s
tick claims in production from a sender running at the target rate (3,000 SMS, 20,000 emails).
"""

import argparse
import logging
import time

from bench.common import Row, print_table, purge_orgs, setup_django

PREFIX = "bench-dispatch-"
SENDER_RATE = 100_000
TICK_SECONDS = 2
SMS_TARGET, EMAIL_TARGET, RATIO_TARGET = 1_500, 10_000, 0.8
# A provider answering like Twilio does (~150 ms), and a sender allowed 100 SMS a second.
SLOW_ANSWER, SLOW_SENDER_RATE, SLOW_RAW_MESSAGES = 0.15, 100, 40


def _configure(url: str) -> None:
    from django.conf import settings

    from delivery.providers import _email_provider, _sms_provider
    from delivery.throttle import get_throttle

    settings.TWILIO_API_BASE_URL = url
    settings.SENDGRID_API_HOST = url
    _sms_provider.cache_clear()
    _email_provider.cache_clear()
    get_throttle.cache_clear()


def _queued_campaign(channel: str, n: int):
    from bench.data import add_messages, make_campaign
    from campaigns.services import campaign_run

    bench = make_campaign(PREFIX, channel=channel, rate=SENDER_RATE)
    add_messages(bench, n)
    campaign_run(campaign=bench.campaign, user=bench.user)
    return bench


def _outbound(campaign, limit: int) -> list:
    """What the engine would hand the provider for the campaign's first messages (unsent)."""
    from django.utils import timezone

    from campaigns.models import Campaign, Channel
    from delivery.dispatch import WindowRules
    from delivery.models import Message
    from delivery.sending import Claimed, _email, _sms

    campaign = Campaign.objects.select_related("sender", "template", "org").get(pk=campaign.pk)
    rows = Message.objects.filter(campaign=campaign).order_by("id").values_list(*Claimed._fields)
    messages = [Claimed(*row) for row in rows[:limit]]
    now = timezone.now()
    if campaign.channel == Channel.SMS:
        rules = WindowRules(campaign)
        return [_sms(campaign, m, now, rules) for m in messages]
    return [_email(campaign, m, ()) for m in messages]


def _dispatch_all(campaign) -> tuple[float, dict[str, int]]:
    """Ticks until a tick releases nothing; returns the seconds taken and the final statuses."""
    from django.db.models import Count
    from django.utils import timezone

    from delivery.dispatch import dispatch_tick
    from delivery.models import Message
    from delivery.sending import send_batch

    started = time.perf_counter()
    while dispatch_tick(timezone.now(), send=lambda ids: send_batch(ids)).released:
        pass
    seconds = time.perf_counter() - started
    statuses = dict(
        Message.objects.filter(campaign=campaign)
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    return seconds, statuses


def _raw_sms_rate(url: str, batch: list, warm_up: int = 20) -> float:
    """The SDK as its README shows it: a stock client, one messages.create per message."""
    from django.conf import settings
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    client = Client(
        settings.TWILIO_ACCOUNT_SID,
        settings.TWILIO_AUTH_TOKEN,
        http_client=TwilioHttpClient(timeout=float(settings.PROVIDER_TIMEOUT_SECONDS)),
    )
    client.api.base_url = url

    def create(sms) -> None:
        client.messages.create(
            to=sms.to,
            from_=sms.sender,
            body=sms.body,
            status_callback=sms.status_callback,
            validity_period=sms.validity_period,
        )

    # The stock client logs every request at INFO; the engine's client only under DEBUG.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    for sms in batch[:warm_up]:
        create(sms)  # warm-up: the connection, the SDK's lazy imports
    started = time.perf_counter()
    for sms in batch:
        create(sms)
    return len(batch) / (time.perf_counter() - started)


def _raw_email_rate(url: str, batch: list) -> float:
    """client.send of the same 1,000-recipient bodies, built before timing: the SDK call alone."""
    import sendgrid
    from django.conf import settings

    from delivery.providers.sendgrid_email import plan_requests

    client = sendgrid.SendGridAPIClient(api_key=settings.SENDGRID_API_KEY, host=url)
    client.client.timeout = float(settings.PROVIDER_TIMEOUT_SECONDS)
    bodies = [request.body for request in plan_requests(batch)]
    client.send(bodies[0])  # warm-up
    started = time.perf_counter()
    for body in bodies:
        client.send(body)
    return len(batch) / (time.perf_counter() - started)


def _measure(channel: str, n: int, url: str) -> tuple[float, float]:
    from django.conf import settings

    from delivery.models import MessageStatus

    # The budget is the sender's rate times the tick: 2 s at the target rate, in one tick.
    target = SMS_TARGET if channel == "sms" else EMAIL_TARGET
    settings.DISPATCH_TICK_SECONDS = TICK_SECONDS * target / SENDER_RATE
    bench = _queued_campaign(channel, n)
    outbound = _outbound(bench.campaign, n)
    raw = _raw_sms_rate(url, outbound) if channel == "sms" else _raw_email_rate(url, outbound)
    seconds, statuses = _dispatch_all(bench.campaign)
    if statuses != {MessageStatus.SENT: n}:
        raise AssertionError(f"{channel}: expected {n} sent, found {statuses}")
    return n / seconds, raw


def _slow_provider_sms(url: str, n: int) -> tuple[float, float]:
    """SMS rate when the provider answers in 150 ms (Twilio's usual) with a 100/s sender: the
    engine (one worker) beside the same calls one after another."""
    import json
    import urllib.request

    from django.conf import settings

    from bench.data import add_messages, make_campaign
    from campaigns.services import campaign_run
    from delivery.models import MessageStatus

    control = urllib.request.Request(
        f"{url}/_sandbox/config",
        data=json.dumps({"fault_mode": "slow", "slow_seconds": SLOW_ANSWER}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(control, timeout=10).read()
    bench = make_campaign(PREFIX, channel="sms", rate=SLOW_SENDER_RATE)
    add_messages(bench, n)
    campaign_run(campaign=bench.campaign, user=bench.user)
    settings.DISPATCH_TICK_SECONDS = TICK_SECONDS
    outbound = _outbound(bench.campaign, SLOW_RAW_MESSAGES)
    raw = _raw_sms_rate(url, outbound, warm_up=1)
    seconds, statuses = _dispatch_all(bench.campaign)
    if statuses != {MessageStatus.SENT: n}:
        raise AssertionError(f"slow sms: expected {n} sent, found {statuses}")
    return n / seconds, raw


def run(quick: bool) -> list[Row]:
    from django.conf import settings

    from bench.sandbox import sandbox_process

    setup_django()
    purge_orgs(PREFIX)
    sms_n, email_n = (3_000, 10_000) if quick else (9_000, 20_000)
    try:
        with sandbox_process(settings.TWILIO_AUTH_TOKEN) as url:
            _configure(url)
            sms, sms_raw = _measure("sms", sms_n, url)
            email, email_raw = _measure("email", email_n, url)
            slow, slow_raw = _slow_provider_sms(url, 400 if quick else 1_000)
    finally:
        purge_orgs(PREFIX)
    return [
        Row(
            f"dispatch SMS release rate, {sms_n:,} msgs vs raw messages.create loop",
            sms,
            sms_raw,
            "msg/s",
            f"≥{SMS_TARGET:,}/s and ≥{RATIO_TARGET}x raw",
            sms >= SMS_TARGET and sms >= RATIO_TARGET * sms_raw,
        ),
        Row(
            f"dispatch email release rate, {email_n:,} recipients vs raw client.send loop",
            email,
            email_raw,
            "rcpt/s",
            f"≥{EMAIL_TARGET:,}/s and ≥{RATIO_TARGET}x raw",
            email >= EMAIL_TARGET and email >= RATIO_TARGET * email_raw,
        ),
        Row(
            f"SMS, provider answering in {SLOW_ANSWER * 1000:.0f} ms, {SLOW_SENDER_RATE}/s sender:"
            " one worker vs raw loop",
            slow,
            slow_raw,
            "msg/s",
            "— (shows requests in flight)",
            True,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    print_table("Dispatch release rate", run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
