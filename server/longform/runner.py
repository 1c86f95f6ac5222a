"""A long file's windows through the batcher, in order, a few in flight at a time.

Windows are submitted progressively: at most `in_flight` of one request wait in the
batcher's queue or run at any moment, so a long file never floods the queue (its
windows count against its tenant's share like any request), and a short request that
arrives meanwhile is older than the long file's next windows: it goes first. Each
window gets its own deadline (`window_timeout_s` from its submission), not the whole
file's. Before each submission `gone()` is asked; when the client has gone, no more
windows are submitted and those in flight are withdrawn (ClientGone). Closing the
iterator early (a streaming response whose client disconnected) withdraws them too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from server.audio import Audio
from server.batcher import Batcher, Result, Work
from server.errors import ClientGone
from server.longform.windows import Window

logger = logging.getLogger(__name__)

Gone = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class WindowDone:
    window: Window
    result: Result


async def run_windows(
    batcher: Batcher,
    audio: Audio,
    windows: list[Window],
    make_work: Callable[[Audio, float, int], Work],
    in_flight: int,
    window_timeout_s: float,
    gone: Gone | None = None,
) -> AsyncIterator[WindowDone]:
    """Each window's result in order. `make_work(audio, deadline, index)` builds its Work."""
    running: list[tuple[Window, asyncio.Task]] = []
    todo = iter(windows)

    async def fill() -> None:
        while len(running) < in_flight:
            window = next(todo, None)
            if window is None:
                return
            if gone is not None and await gone():
                raise ClientGone("the client disconnected; no more windows are submitted")
            clip = Audio(audio.samples[window.start : window.end], audio.rate)
            work = make_work(clip, time.monotonic() + window_timeout_s, window.index)
            running.append((window, asyncio.create_task(batcher.submit(work))))

    try:
        await fill()
        while running:
            window, task = running.pop(0)
            result = await task
            await fill()
            yield WindowDone(window, result)
    finally:
        for _, task in running:  # an error, a disconnect or an early close
            task.cancel()
        for _, task in running:
            try:
                await task
            except BaseException:  # noqa: BLE001 - withdrawn; its outcome is nobody's
                pass
