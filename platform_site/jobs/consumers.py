import asyncio
import contextlib

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from platform_site import realtime
from platform_site.errors import NotFound


class JobConsumer(AsyncJsonWebsocketConsumer):
    """Streams a job's snapshots: pushed through the channel layer, or read from its row when there is none."""

    job_id: int
    poller: asyncio.Task | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        snapshot = await self._snapshot(user)
        if snapshot is None:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(realtime.job_group(self.job_id), self.channel_name)
        await self.accept()
        await self.send_json(snapshot)
        if settings.REALTIME_POLL and snapshot["status"] not in ("succeeded", "failed", "cancelled"):
            self.poller = asyncio.create_task(self._poll(snapshot))

    async def disconnect(self, code: int) -> None:
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller
        await self.channel_layer.group_discard(realtime.job_group(self.job_id), self.channel_name)

    async def job_update(self, event: dict) -> None:
        await self.send_json(event["job"])

    async def receive_json(self, content, **kwargs) -> None:
        """Clients may ask for a fresh snapshot with {"type": "refresh"}; nothing else is accepted."""
        if content == {"type": "refresh"}:
            snapshot = await self._snapshot(self.scope.get("user"))
            if snapshot is not None:
                await self.send_json(snapshot)

    async def _poll(self, last: dict) -> None:
        # The embedded default has no channel layer shared with the worker, so the row is the source.
        while True:
            await asyncio.sleep(settings.REALTIME_POLL_SECONDS)
            snapshot = await self._snapshot(self.scope.get("user"))
            if snapshot is None:
                return
            if snapshot != last:
                await self.send_json(snapshot)
                last = snapshot
            if snapshot["status"] in ("succeeded", "failed", "cancelled"):
                return

    @database_sync_to_async
    def _snapshot(self, user) -> dict | None:
        from platform_site.jobs.selectors import job_get_for_user
        from platform_site.jobs.services import job_snapshot

        if user is None or not user.is_authenticated:
            return None
        try:
            return job_snapshot(job_get_for_user(job_id=self.job_id, user=user))
        except NotFound:
            return None
