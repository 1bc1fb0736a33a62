"""Celery tasks: the beat's dispatcher tick and the batch sender. Each takes ids, calls a service
and returns a small stats dict."""

import contextlib
import threading
from collections.abc import Iterator

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model

from campaigns.models import ActionNotAllowed, Campaign
from delivery.clock import Clock
from delivery.dispatch import dispatch_tick, tick_seconds
from delivery.reconciliation import unconfirmed_reconcile
from delivery.sending import drain_ready
from delivery.sending import send_batch as send_batch_service

_local_tick_lock = threading.Lock()


@contextlib.contextmanager
def tick_lock() -> Iterator[bool]:
    """Yields True for the one tick allowed to run now; two beats never tick at once."""
    if not settings.REDIS_URL:
        acquired = _local_tick_lock.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                _local_tick_lock.release()
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
    # Expires on its own if the ticking process dies, so the dispatcher can never stay stuck.
    lock = client.lock("outreach:dispatch-tick", timeout=max(30, tick_seconds() * 10))
    acquired = lock.acquire(blocking=False)
    try:
        yield acquired
    finally:
        if acquired:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()


@shared_task(name="delivery.dispatch_tick", ignore_result=True)
def dispatch_tick_task() -> dict:
    with tick_lock() as acquired:
        if not acquired:
            return {"skipped": "another tick is running"}
        report = dispatch_tick()
        return {"released": sum(report.released.values()), "finished": len(report.finished)}


@shared_task(name="delivery.send_ready", ignore_result=True)
def send_ready(token: str = "") -> dict:
    return drain_ready(token).as_dict()


@shared_task(name="delivery.send_batch", ignore_result=True)
def send_batch(message_ids: list[int], clock_offset: float = 0.0) -> dict:
    # Queued by the engine before the ready queue: one still in the broker at an upgrade sends.
    return send_batch_service(message_ids, clock=Clock.from_seconds(clock_offset)).as_dict()


@shared_task(name="delivery.reconcile_unconfirmed", ignore_result=True)
def reconcile_unconfirmed(campaign_id: int, user_id: int | None = None) -> dict:
    campaign = Campaign.objects.select_related("org", "sender", "template").get(pk=campaign_id)
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    try:
        report = unconfirmed_reconcile(campaign=campaign, user=user)
    except ActionNotAllowed as error:  # the campaign moved on since the button was pressed
        return {"refused": str(error)}
    return {"checked": report.checked, "not_found": report.not_found, "failed": report.failed}
