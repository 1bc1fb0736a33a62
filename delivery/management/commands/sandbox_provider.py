import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from delivery.sandbox import SandboxConfig, SandboxProvider, load_or_create_keypair
from delivery.sandbox.server import FAULT_MODES


def sandbox_key_file() -> Path:
    """Where the sandbox's SendGrid signing key lives, shared with the web process."""
    configured = getattr(settings, "SANDBOX_KEY_FILE", None)
    return Path(configured or settings.BASE_DIR / "var" / "sandbox-sendgrid-key.pem")


class Command(BaseCommand):
    help = (
        "Runs the local sandbox provider in the foreground: Twilio's Messages API and "
        "SendGrid's mail send on one port, posting signed callbacks to this site's webhooks."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8025)
        parser.add_argument("--seed", type=int, default=0, help="Makes outcomes reproducible")
        parser.add_argument(
            "--callback-delay", type=float, default=0.5, help="Seconds between callbacks"
        )
        parser.add_argument(
            "--fault-mode", choices=[m for m in FAULT_MODES if m], help="Answer every send so"
        )
        parser.add_argument("--fault-ratio", type=float, default=1.0)
        parser.add_argument(
            "--no-callbacks", action="store_true", help="Accept sends but post nothing back"
        )

    def handle(self, *args: object, **opts: object) -> None:
        try:
            config = SandboxConfig(
                seed=opts["seed"],
                callback_delay=opts["callback_delay"],
                fault_mode=opts["fault_mode"],
                fault_ratio=opts["fault_ratio"],
                callbacks=not opts["no_callbacks"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        key_file = sandbox_key_file()
        private_pem, public_key = load_or_create_keypair(key_file)
        base_url = settings.PUBLIC_BASE_URL.rstrip("/")
        try:
            sandbox = SandboxProvider(
                opts["host"],
                opts["port"],
                twilio_account_sid=settings.TWILIO_ACCOUNT_SID,
                twilio_auth_token=settings.TWILIO_AUTH_TOKEN,
                sendgrid_api_key=settings.SENDGRID_API_KEY,
                sendgrid_private_key_pem=private_pem,
                sendgrid_webhook_url=base_url + reverse("delivery:sendgrid_events"),
                twilio_inbound_url=base_url + reverse("delivery:twilio_inbound"),
                config=config,
            )
        except OSError as exc:
            raise CommandError(f"Cannot listen on {opts['host']}:{opts['port']}: {exc}") from None
        sandbox.start()
        self.stdout.write(f"Sandbox provider listening on {sandbox.url}")
        self.stdout.write(f"Callbacks go to {base_url}; SendGrid signing key in {key_file}")
        if public_key != settings.SENDGRID_WEBHOOK_PUBLIC_KEY:
            # Without the matching key the web process rightly refuses every SendGrid event.
            self.stdout.write(
                self.style.WARNING(f"Set SENDGRID_WEBHOOK_PUBLIC_KEY={public_key} for the web site")
            )
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass
        finally:
            sandbox.stop()
            self.stdout.write("Sandbox provider stopped.")
