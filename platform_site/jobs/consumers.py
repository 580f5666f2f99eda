from channels.db import database_sync_to_async

from platform_site import realtime
from platform_site.consumers import SnapshotConsumer
from platform_site.errors import NotFound


class JobConsumer(SnapshotConsumer):
    """Streams a job's snapshots to its owner: pushed through the channel layer, or read from its row when there
    is none."""

    refused_code = 4403
    job_id: int

    async def connect(self) -> None:
        self.job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        await super().connect()

    def group(self) -> str:
        return realtime.job_group(self.job_id)

    def done(self, snapshot: dict) -> bool:
        return snapshot["status"] in ("succeeded", "failed", "cancelled")

    async def job_update(self, event: dict) -> None:
        await self.send_json(event["job"])

    @database_sync_to_async
    def snapshot(self) -> dict | None:
        from platform_site.jobs.selectors import job_get_for_user
        from platform_site.jobs.services import job_snapshot

        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return None
        try:
            return job_snapshot(job_get_for_user(job_id=self.job_id, user=user))
        except NotFound:
            return None
