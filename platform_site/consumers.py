"""What every live page's websocket does: send the object's snapshot on connect and whenever it changes, pushed
through the channel layer by `platform_site.realtime`, or read again every REALTIME_POLL_SECONDS where that layer
is not shared with the workers (the embedded default); and a fresh one when the page asks {"type": "refresh"}."""

import asyncio
import contextlib

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings


class SnapshotConsumer(AsyncJsonWebsocketConsumer):
    """Subclasses say which group pushes reach them (`group`), how to read a snapshot (`snapshot`, None when the
    object is gone or not the caller's to see) and when nothing more will change (`done`)."""

    refused_code = 4404  # the close code when there is no snapshot for this caller
    poller: asyncio.Task | None = None

    def group(self) -> str:
        raise NotImplementedError

    async def snapshot(self) -> dict | None:
        raise NotImplementedError

    def done(self, snapshot: dict) -> bool:
        return False

    async def connect(self) -> None:
        snapshot = await self.snapshot()
        if snapshot is None:
            await self.close(code=self.refused_code)
            return
        await self.channel_layer.group_add(self.group(), self.channel_name)
        await self.accept()
        await self.send_json(snapshot)
        if settings.REALTIME_POLL and not self.done(snapshot):
            self.poller = asyncio.create_task(self._poll(snapshot))

    async def disconnect(self, code: int) -> None:
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller
        await self.channel_layer.group_discard(self.group(), self.channel_name)

    async def send_snapshot(self) -> None:
        snapshot = await self.snapshot()
        if snapshot is not None:
            await self.send_json(snapshot)

    async def receive_json(self, content, **kwargs) -> None:
        """Clients may ask for a fresh snapshot with {"type": "refresh"}; nothing else is accepted."""
        if content == {"type": "refresh"}:
            await self.send_snapshot()

    async def _poll(self, last: dict) -> None:
        while True:
            await asyncio.sleep(settings.REALTIME_POLL_SECONDS)
            snapshot = await self.snapshot()
            if snapshot is None:
                return
            if snapshot != last:
                await self.send_json(snapshot)
                last = snapshot
            if self.done(snapshot):
                return
