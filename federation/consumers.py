from channels.db import database_sync_to_async

from federation.services.common import federation_group
from platform_site.consumers import SnapshotConsumer
from platform_site.errors import NotFound


class FederationConsumer(SnapshotConsumer):
    """Streams a federation's snapshot (status, rounds with their updates and metrics) whenever it changes:
    pushed after each accepted update, opened or aggregated round and the end, or read from the rows when the
    channel layer is not shared with the worker. Public, like the federation's page."""

    federation_id: int

    async def connect(self) -> None:
        self.federation_id = int(self.scope["url_route"]["kwargs"]["federation_id"])
        await super().connect()

    def group(self) -> str:
        return federation_group(self.federation_id)

    async def federation_changed(self, event: dict) -> None:
        await self.send_snapshot()

    @database_sync_to_async
    def snapshot(self) -> dict | None:
        from federation.selectors import federation_snapshot

        try:
            return federation_snapshot(federation_id=self.federation_id)
        except NotFound:
            return None
