import asyncio
import contextlib

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from platform_site.errors import NotFound


def federation_group(federation_id: int) -> str:
    return f"federation.{federation_id}"


class FederationConsumer(AsyncJsonWebsocketConsumer):
    """Streams a federation's snapshot (status, rounds with their updates and metrics) whenever it changes:
    pushed after each accepted update, opened or aggregated round and the end, or read from the rows when the
    channel layer is not shared with the worker. Public, like the federation's page."""

    federation_id: int
    poller: asyncio.Task | None = None

    async def connect(self) -> None:
        self.federation_id = int(self.scope["url_route"]["kwargs"]["federation_id"])
        snapshot = await self._snapshot()
        if snapshot is None:
            await self.close(code=4404)
            return
        await self.channel_layer.group_add(federation_group(self.federation_id), self.channel_name)
        await self.accept()
        await self.send_json(snapshot)
        if settings.REALTIME_POLL:
            self.poller = asyncio.create_task(self._poll(snapshot))

    async def disconnect(self, code: int) -> None:
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller
        await self.channel_layer.group_discard(federation_group(self.federation_id), self.channel_name)

    async def federation_changed(self, event: dict) -> None:
        snapshot = await self._snapshot()
        if snapshot is not None:
            await self.send_json(snapshot)

    async def receive_json(self, content, **kwargs) -> None:
        """Clients may ask for a fresh snapshot with {"type": "refresh"}; nothing else is accepted."""
        if content == {"type": "refresh"}:
            await self.federation_changed({})

    async def _poll(self, last: dict) -> None:
        while True:
            await asyncio.sleep(settings.REALTIME_POLL_SECONDS)
            snapshot = await self._snapshot()
            if snapshot is None:
                return
            if snapshot != last:
                await self.send_json(snapshot)
                last = snapshot

    @database_sync_to_async
    def _snapshot(self) -> dict | None:
        from federation.selectors import federation_snapshot

        try:
            return federation_snapshot(federation_id=self.federation_id)
        except NotFound:
            return None
