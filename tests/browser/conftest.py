"""Browser fixtures: Debian's chromium driven by Playwright, a page per test, step screenshots."""

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_service
from tests.factories import TEST_PASSWORD

# Playwright's sync API keeps an event loop in this thread, which trips Django's async-safety
# check on every ORM call the test (or a fixture) makes; the calls really are synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
# Generous for the live test server while Celery processes share the machine.
DEFAULT_TIMEOUT_MS = 15_000


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    need_service(CHROMIUM.exists(), f"Chromium ({CHROMIUM})")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets the page fixture know whether the test failed, to keep a screenshot of the moment.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


class Shots:
    """Numbered full-page screenshots: test-artifacts/browser/<test>/<NN>-<step>.png."""

    def __init__(self, page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.count = 0
        self.taken: list[Path] = []

    def __call__(self, step: str, page=None) -> Path:
        """Saves the next screenshot of the test's page (or of another page, e.g. a recipient's)."""
        self.count += 1
        slug = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
        path = self.folder / f"{self.count:02d}-{slug}.png"
        (page or self.page).screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.fixture
def page(browser, live_server, request):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    yield page
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        shot = getattr(request.node, "shots", None)
        if shot is not None:
            shot("failure")
    context.close()


@pytest.fixture
def shot(page, request) -> Shots:
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shots = Shots(page, folder)
    request.node.shots = shots
    return shots


def log_in(page, username: str, password: str = TEST_PASSWORD) -> None:
    """Logs in through the login form and waits for the console."""
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
