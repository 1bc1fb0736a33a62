"""The sandbox provider in a child process, as a provider is another machine.

In one process the client and the server would share one interpreter lock and measure each
other. Callbacks are off: the benchmarks that use it measure sending, not webhooks.
"""

import argparse
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bench.common import ROOT


def serve(auth_token: str) -> None:
    """Child mode: serve until the parent closes our stdin."""
    from delivery.sandbox import SandboxConfig, SandboxProvider, generate_sendgrid_keypair

    pem, _ = generate_sendgrid_keypair()
    sandbox = SandboxProvider(
        twilio_auth_token=auth_token,
        sendgrid_private_key_pem=pem,
        sendgrid_webhook_url="http://127.0.0.1:9/unused",
        twilio_inbound_url="http://127.0.0.1:9/unused",
        config=SandboxConfig(callbacks=False),
    ).start()
    print(sandbox.url, flush=True)
    sys.stdin.read()
    sandbox.stop()


@contextmanager
def sandbox_process(auth_token: str) -> Iterator[str]:
    """Runs the sandbox in a child process; yields its base URL."""
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.sandbox", "--token", auth_token],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = child.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the sandbox did not start")
        yield url
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", required=True)
    serve(parser.parse_args().token)
