"""Hostile and broken uploads: a clear message each, nothing stored, memory bounded."""

import codecs
import io
import time
import tracemalloc
import zipfile

import pytest
from django.utils import timezone

from delivery.models import Message
from recipients.models import RecipientList
from recipients.services import recipient_list_import
from tests.recipients.test_upload import sms_campaign, upload  # noqa: F401 (a fixture)

HEADER = "timezone,phone_number,name\n"


def _rows(count: int, first: int = 0) -> str:
    return "".join(
        f"America/Chicago,+1212{200 + n // 10000:03d}{n % 10000:04d},Person {n}\n"
        for n in range(first, first + count)
    )


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("patients.csv", HEADER + _rows(3))
    return out.getvalue()


def _lines(count: int = 1_000_000) -> bytes:
    return (HEADER + "".join(f",212{n % 10_000_000:07d},P\n" for n in range(count))).encode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            (HEADER + "America/Chicago,+12125550100," + "x" * 21 * 1024 * 1024 + "\n").encode(),
            "the limit is 20 MB",
            id="oversize",
        ),
        pytest.param(bytes(range(256)) * 64, "This file is not a CSV", id="binary"),
        pytest.param(_zip(), "This file is not a CSV", id="zip"),
        pytest.param(
            (HEADER + _rows(2)).encode("utf-16-le"), "saved as UTF-16 text", id="utf16-without-bom"
        ),
        pytest.param(
            (HEADER + "America/Chicago,+12125550100,Ana\x00Garcia\n").encode(),
            "This file is not a CSV",
            id="nul-bytes",
        ),
        pytest.param(
            (HEADER + _rows(2000) + "America/Chicago,+12125550100,Ana\x00Garcia\n").encode(),
            "NUL",
            id="nul-byte-deep-in-the-file",
        ),
        pytest.param(
            (HEADER + "America/Chicago,+12125550100," + "y" * 10 * 1024 * 1024 + "\n").encode(),
            "Value too long",
            id="10MB-single-field",
        ),
        pytest.param(_lines(), "This file has 1,000,000 rows", id="million-lines"),
    ],
)
def test_a_hostile_upload_gets_a_clear_message_and_stores_nothing(
    sms_campaign,  # noqa: F811 (the fixture imported above)
    admin_client,
    content,
    message,
):
    started = time.monotonic()
    page = upload(admin_client, sms_campaign, content, name="hostile.csv").content.decode()
    assert message in page, page[page.find("<main") :][:3000]
    assert "“hostile.csv” was not imported" in page or "File too large" in page
    assert not RecipientList.objects.exists() and not Message.objects.exists()
    # Answered well inside a web server's request timeout (30 s by default in gunicorn).
    assert time.monotonic() - started < 30


def test_excel_unicode_text_with_a_byte_order_mark_imports(sms_campaign, admin_client):  # noqa: F811
    content = codecs.BOM_UTF16_LE + (HEADER + _rows(3)).encode("utf-16-le")
    upload(admin_client, sms_campaign, content)
    assert Message.objects.filter(campaign=sms_campaign).count() == 3


def _peak_import_memory(campaign, path) -> int:
    tracemalloc.start()
    try:
        with path.open("rb") as stream:
            result = recipient_list_import(
                campaign=campaign,
                stream=stream,
                file_name=path.name,
                start_at=timezone.now(),
                end_at=None,
                user=None,
            )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not result.accepted
    return peak


def test_import_memory_stops_growing_with_the_file_past_the_row_cap(sms_campaign, tmp_path):  # noqa: F811
    # Every row is invalid (212-000-…): without the cap each would be kept for the error log.
    small, large = tmp_path / "100k.csv", tmp_path / "1M.csv"
    small.write_bytes(_lines(100_000))
    large.write_bytes(_lines())
    small_peak = _peak_import_memory(sms_campaign, small)
    large_peak = _peak_import_memory(sms_campaign, large)
    assert large_peak < small_peak * 1.25, (small_peak, large_peak)
