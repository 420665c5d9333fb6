"""Tell connected pages that something changed, within a second of the commit.

One watcher per board process reads the store's change marker every ``interval`` seconds (in a
worker thread: the query must not block the event loop) and wakes every page's event stream
(Server-Sent Events) when it moves. Whoever committed — the daemon, the operator CLI, another
board process — the marker moves, so several board processes behind a proxy all stay live.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool

#: Seconds between two reads of the change marker.
WATCH_INTERVAL = 0.5
#: Seconds between keep-alive comments on an idle stream (proxies drop silent connections).
KEEPALIVE_SECONDS = 15.0


class ChangeWatcher:
    """The change marker, shared by every stream of this process."""

    def __init__(self, read_marker: Callable[[], str], interval: float = WATCH_INTERVAL) -> None:
        self.read_marker, self.interval = read_marker, interval
        self.marker = ""
        self.version = 0
        #: Set (and replaced by a fresh one) at each change: a stream waits on the one it holds.
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._changed = asyncio.Event()
        self.marker = await run_in_threadpool(self.read_marker)
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        assert self._changed is not None
        while True:
            await asyncio.sleep(self.interval)
            try:
                marker = await run_in_threadpool(self.read_marker)
            except Exception:  # the database is briefly away: the pages keep their view
                continue
            if marker != self.marker:
                self.marker = marker
                self.version += 1
                changed, self._changed = self._changed, asyncio.Event()
                changed.set()

    async def stream(self, is_disconnected: Callable[[], object]) -> AsyncIterator[str]:
        """SSE lines: ``event: change`` whenever the marker moves, a comment when idle."""
        assert self._changed is not None
        seen = self.version
        yield f"retry: 2000\nevent: hello\ndata: {seen}\n\n"
        while True:
            changed = self._changed
            if self.version == seen:
                try:
                    await asyncio.wait_for(changed.wait(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    if await _awaited(is_disconnected()):
                        return
                    yield ": keep-alive\n\n"
                    continue
            seen = self.version
            yield f"event: change\ndata: {seen}\n\n"


async def _awaited(value: object) -> bool:
    if asyncio.iscoroutine(value):
        return bool(await value)
    return bool(value)
