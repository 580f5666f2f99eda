import asyncio
import contextlib
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

ENTRIES_GROUP = "ledger.entries"
# The explorer shows one page of 50: a burst larger than this only needs its newest entries sent.
MAX_BATCH = 50


class LedgerConsumer(AsyncJsonWebsocketConsumer):
    """Streams new entries' summaries to the explorer: on each push, or by polling the head's size when the
    channel layer is not shared with the processes that append (the embedded default).

    `?after=SEQ` names the newest entry the page already shows; the entries after it are sent first, so nothing
    appended between rendering the page and opening the socket is missed.
    """

    last_seq: int = -1
    poller: asyncio.Task | None = None
    lock: asyncio.Lock

    async def connect(self) -> None:
        # Public, like the explorer page that opens it.
        self.lock = asyncio.Lock()
        size = await self._size()
        self.last_seq = min(self._after(default=size - 1), size - 1)
        await self.channel_layer.group_add(ENTRIES_GROUP, self.channel_name)
        await self.accept()
        await self._send_through(size - 1)
        if settings.REALTIME_POLL:
            self.poller = asyncio.create_task(self._poll())

    async def disconnect(self, code: int) -> None:
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller
        await self.channel_layer.group_discard(ENTRIES_GROUP, self.channel_name)

    async def ledger_entry(self, event: dict[str, Any]) -> None:
        # Everything up to the pushed seq, not just that one: a lost or reordered push leaves no gap.
        await self._send_through(int(event["seq"]))

    async def receive_json(self, content: Any, **kwargs) -> None:
        """Clients may ask for what they missed with {"type": "refresh"}; nothing else is accepted."""
        if content == {"type": "refresh"}:
            await self._send_through(await self._size() - 1)

    def _after(self, *, default: int) -> int:
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("after", [])
        try:
            return max(int(values[0]), -1) if values else default
        except ValueError:
            return default

    async def _poll(self) -> None:
        # The embedded default's in-memory layer does not reach this process from the worker: the head row does.
        while True:
            await asyncio.sleep(settings.REALTIME_POLL_SECONDS)
            await self._send_through(await self._size() - 1)

    async def _send_through(self, seq: int) -> None:
        async with self.lock:  # the poller and the push handler must not send the same entry twice
            if seq <= self.last_seq:
                return
            for summary in await self._summaries(self.last_seq, seq):
                await self.send_json({"type": "entry", "entry": summary})
            self.last_seq = seq

    @database_sync_to_async
    def _size(self) -> int:
        from ledger.selectors import ledger_size

        return ledger_size()

    @database_sync_to_async
    def _summaries(self, after: int, through: int) -> list[dict[str, Any]]:
        from ledger.models import Entry
        from ledger.views import LIST_FIELDS, entry_summary

        newest = Entry.objects.filter(seq__gt=after, seq__lte=through).only(*LIST_FIELDS).order_by("-seq")
        return [entry_summary(entry) for entry in reversed(newest[:MAX_BATCH])]
