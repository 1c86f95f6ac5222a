"""A long file's windows through the batcher, in order, a few in flight at a time.

Windows are submitted progressively: at most `in_flight` of one request wait in the
batcher's queue or run at any moment, so a long file never floods the queue (its
windows count against its tenant's share like any request), and a short request that
arrives meanwhile is older than the long file's next windows: it goes first. Each
window gets its own deadline (`window_timeout_s` from its submission), not the whole
file's; a later window that finds the queue full waits for room (until its deadline)
rather than failing a request that has already done work. Before each submission
`gone()` is asked; when the client has gone, no more windows are submitted and those
in flight are withdrawn (ClientGone). Closing the iterator early (a streaming response
whose client disconnected) withdraws them too. A finished window may be followed by a
tail over what it left (tails.py): it takes the finished one's place in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from server.audio.reading import Audio
from server.errors import ClientGone, Overloaded
from server.longform.windows import Window
from server.serving.batcher import Batcher, Result, Work

logger = logging.getLogger(__name__)

Gone = Callable[[], Awaitable[bool]]
FollowUp = Callable[[Window, Result], Window | None]
RETRY_S = 0.05  # a later window's wait between tries for room in the queue


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
    follow_up: FollowUp | None = None,
) -> AsyncIterator[WindowDone]:
    """Each window's result in order. `make_work(audio, deadline, index)` builds its Work.
    `follow_up(window, result)`: a window to run next, before the later ones (a tail,
    tails.py), or None; it is submitted at once, in the place the finished one left."""
    running: list[tuple[Window, asyncio.Task]] = []
    todo = iter(windows)

    async def submit(window: Window, first: bool = False) -> asyncio.Task:
        if gone is not None and await gone():
            raise ClientGone("the client disconnected; no more windows are submitted")
        clip = Audio(audio.samples[window.start : window.end], audio.rate)
        work = make_work(clip, time.monotonic() + window_timeout_s, window.index)
        return asyncio.create_task(batcher.submit(work) if first else _patiently(batcher, work))

    async def fill() -> None:
        while len(running) < in_flight:
            window = next(todo, None)
            if window is None:
                return
            first = not running and window is windows[0]
            running.append((window, await submit(window, first)))

    try:
        await fill()
        while running:
            window, task = running.pop(0)
            result = await task
            tail = follow_up(window, result) if follow_up is not None else None
            if tail is not None:
                running.insert(0, (tail, await submit(tail)))
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


async def _patiently(batcher: Batcher, work: Work) -> Result:
    """A later window the queue has no room for waits for room until its deadline: the
    request has already streamed text, or done work, that a 503 would throw away. (The
    first window is refused at once: the client gets 503 `overloaded` before any text.)"""
    while True:
        try:
            return await batcher.submit(work)
        except Overloaded:
            if time.monotonic() + RETRY_S >= work.deadline:
                raise
            await asyncio.sleep(RETRY_S)
