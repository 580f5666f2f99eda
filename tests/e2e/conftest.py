import os
import subprocess
import sys
import urllib.request

import pytest

from tests.processes import ROOT, database_url_for_tests, free_port, stop, wait_for


@pytest.fixture
def asgi_server(transactional_db, tmp_path):
    """Uvicorn serving the site over HTTP and websockets against the test database."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_tests(),
        "DJANGO_SETTINGS_MODULE": "platform_site.settings_test",
    }
    log = tmp_path / "web.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "platform_site.asgi:application"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/accounts/login/", timeout=2):  # noqa: S310  (loopback only)
                return True
        except OSError:
            return False

    try:
        wait_for(up, timeout=60, what="the web server", proc=proc)
    except Exception:
        stop(proc)
        raise RuntimeError(log.read_text()[-4000:]) from None
    yield url
    stop(proc)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )  # fmt: skip
        yield chromium
        chromium.close()
