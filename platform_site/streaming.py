"""Django's ASGI handler, except that a raw binary PUT body is streamed to the view instead of spooled first.

Django's own handler reads every request body whole into a temporary file before the view runs. For a `PUT`
with `Content-Type: application/octet-stream` this handler gives the request a `BodyStream` instead: the view
reads it with `request.read()` while the body is still arriving, in chunks of about a megabyte, never more than
`BUFFERS` of them held. A view that refuses early stops the body there.
"""

import asyncio
import queue

from django.core.handlers.asgi import ASGIHandler
from django.http.request import RawPostDataException
from django.http.request import UnreadablePostError as _Unreadable

BUFFER_BYTES = 1 << 20
BUFFERS = 8


def streams_body(scope) -> bool:
    if scope.get("method") != "PUT":
        return False
    headers = dict(scope.get("headers") or [])
    return headers.get(b"content-type", b"").split(b";")[0].strip().lower() == b"application/octet-stream"


class BodyStream:
    """A file-like body read by the view's thread while a task on the event loop receives it."""

    def __init__(self, receive, loop: asyncio.AbstractEventLoop) -> None:
        self._receive, self._loop = receive, loop
        self._chunks: queue.SimpleQueue = queue.SimpleQueue()
        self._room = asyncio.Semaphore(BUFFERS)
        self._pending = b""
        self._ended = False
        self.finished = asyncio.Event()  # the whole body (or a disconnect) has been received
        self._task = loop.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            more, parts, size = True, [], 0
            while more:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self._chunks.put(_Unreadable("the client disconnected during the upload"))
                    return
                more = message.get("more_body", False)
                if body := message.get("body"):
                    parts.append(body)
                    size += len(body)
                if size >= BUFFER_BYTES or (not more and parts):
                    await self._room.acquire()  # at most BUFFERS chunks wait for the view
                    self._chunks.put(b"".join(parts))
                    parts, size = [], 0
            self._chunks.put(b"")
        except asyncio.CancelledError:
            self._chunks.put(_Unreadable("the request ended before its body"))  # no reader waits forever
            raise
        finally:
            self.finished.set()

    def _released(self) -> None:
        self._room.release()

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left with -1); b"" at the end of the body."""
        out = [self._pending]
        have = len(self._pending)
        while not self._ended and (size < 0 or have < size):
            chunk = self._chunks.get()
            if isinstance(chunk, Exception):
                self._ended = True
                raise chunk
            self._loop.call_soon_threadsafe(self._released)
            if not chunk:
                self._ended = True
                break
            out.append(chunk)
            have += len(chunk)
        data = b"".join(out)
        if size < 0:
            self._pending = b""
            return data
        self._pending = data[size:]
        return data[:size]

    def close(self) -> None:
        if not self._task.done():
            self._loop.call_soon_threadsafe(self._task.cancel)

    def seekable(self) -> bool:
        return False

    def readline(self, *args, **kwargs) -> bytes:
        raise RawPostDataException("a streamed body is read in chunks, not by lines")


class _AfterBody:
    """The `receive` that Django's disconnect listener gets: it waits until the body stream has been received,
    so that the two never read the same messages."""

    def __init__(self, receive, stream: BodyStream) -> None:
        self.receive, self.stream = receive, stream

    async def __call__(self):
        await self.stream.finished.wait()
        return await self.receive()


class StreamingASGIHandler(ASGIHandler):
    async def handle(self, scope, receive, send):
        if streams_body(scope):
            stream = BodyStream(receive, asyncio.get_running_loop())
            try:
                return await super().handle(scope, _AfterBody(receive, stream), send)
            finally:
                stream.close()
        return await super().handle(scope, receive, send)

    async def read_body(self, receive):
        if isinstance(receive, _AfterBody):
            return receive.stream
        return await super().read_body(receive)
