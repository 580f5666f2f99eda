"""`manage.py jobprobe --url URL`: prove a running stack end to end over HTTP: web, broker, worker, database.

Only the API token is made directly in the database (it must share the stack's database); everything else goes
through the site's public HTTP endpoints, the way a client would: /healthz, then the ML self-test job.
"""

import json
import secrets
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from platform_site.accounts.services import api_token_create, api_token_revoke, user_signup

PROBE_USERNAME = "probe"
FINISHED = {"succeeded", "failed", "cancelled"}


class ProbeHttpError(Exception):
    """The stack could not be reached at all (refused, reset, timed out)."""


def http_json(
    method: str, url: str, *, token: str = "", body: Any = None, timeout: float = 30
) -> tuple[int, Any]:
    """Send one request and return (status, parsed JSON or the raw text); HTTP error statuses are returned too."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310  (scheme checked)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310  (scheme checked)
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ProbeHttpError(f"{method} {url}: {reason}") from exc
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class Command(BaseCommand):
    help = "Check a running stack over HTTP: optionally wait for /healthz, then run the ML self-test job to the end."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--url", required=True, help="base URL of the running site, e.g. http://127.0.0.1:8000"
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=300.0,
            help="seconds to wait for health, and again for the job (300)",
        )
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
        parser.add_argument(
            "--wait-healthy", action="store_true", help="first wait until /healthz reports the worker ok"
        )
        parser.add_argument(
            "--health-only",
            action="store_true",
            help="only wait until /healthz reports the worker ok; no job",
        )
        parser.add_argument("--epochs", type=int, default=2, help="epochs of the self-test job (default 2)")

    def handle(self, *args, **options) -> None:
        base = options["url"].rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise CommandError("--url must start with http:// or https://")
        self.timeout = options["timeout"]
        self.interval = options["interval"]

        if options["wait_healthy"] or options["health_only"]:
            self.wait_healthy(base)
        if options["health_only"]:
            return

        user = self.probe_user()
        token, key = api_token_create(
            user=user, name="jobprobe", expires_at=timezone.now() + timedelta(seconds=self.timeout + 600)
        )
        try:
            job = self.run_job(base, key, epochs=options["epochs"])
        finally:
            api_token_revoke(token=token, actor=user)
        self.stdout.write(json.dumps(job, indent=2, sort_keys=True))
        if job.get("status") != "succeeded":
            raise CommandError(
                f"job {job.get('id')} {job.get('status')}: {job.get('error') or 'no error given'}"
            )
        self.stdout.write(
            self.style.SUCCESS(f"jobprobe: job {job['id']} succeeded; the stack works end to end")
        )

    def wait_healthy(self, base: str) -> None:
        url = f"{base}/healthz"
        self.stdout.write(f"jobprobe: waiting up to {self.timeout:g}s for {url} to report the worker ok")
        deadline = time.monotonic() + self.timeout
        last = ""
        while True:
            try:
                status, data = http_json("GET", url, timeout=10)
                worker = data.get("checks", {}).get("worker", {}) if isinstance(data, dict) else {}
                if worker.get("ok") is True:
                    self.stdout.write(f"jobprobe: healthy ({status}): {json.dumps(data, sort_keys=True)}")
                    return
                seen = f"HTTP {status}: {json.dumps(data, sort_keys=True) if isinstance(data, dict) else data[:500]}"
            except ProbeHttpError as exc:
                seen = str(exc)
            if seen != last:
                self.stdout.write(f"jobprobe: not healthy yet: {seen}")
                last = seen
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"{url} did not report the worker ok within {self.timeout:g}s; last: {last}"
                )
            time.sleep(self.interval)

    def probe_user(self):
        user = get_user_model().objects.filter(username=PROBE_USERNAME).first()
        if user is None:
            # Nobody logs in as the probe: the password is random and never shown.
            user = user_signup(
                username=PROBE_USERNAME, password=secrets.token_urlsafe(24), display_name="Job probe"
            )
        return user

    def run_job(self, base: str, key: str, *, epochs: int) -> dict[str, Any]:
        try:
            status, job = http_json("POST", f"{base}/api/jobs/selftest/", token=key, body={"epochs": epochs})
        except ProbeHttpError as exc:
            raise CommandError(f"could not submit the self-test job: {exc}") from exc
        if status != 201 or not isinstance(job, dict) or "id" not in job:
            raise CommandError(f"submitting the self-test job answered HTTP {status}: {job}")
        job_id = job["id"]
        url = f"{base}/api/jobs/{job_id}/"
        self.stdout.write(f"jobprobe: job {job_id} submitted; polling {url} for up to {self.timeout:g}s")

        deadline = time.monotonic() + self.timeout
        last = ""
        while True:
            try:
                status, data = http_json("GET", url, token=key, timeout=10)
            except ProbeHttpError as exc:
                # The web server may be restarting; keep trying until the deadline.
                status, data = 0, str(exc)
            if status == 200 and isinstance(data, dict):
                job = data
                if job.get("status") in FINISHED:
                    return job
                seen = f"{job.get('status')} {float(job.get('progress') or 0):.0%} {job.get('message', '')}".rstrip()
            else:
                seen = f"HTTP {status}: {data}"
            if seen != last:
                self.stdout.write(f"jobprobe: job {job_id}: {seen}")
                last = seen
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"job {job_id} did not finish within {self.timeout:g}s; last seen: {json.dumps(job, sort_keys=True)}"
                )
            time.sleep(self.interval)
