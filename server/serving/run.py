"""One transcription in progress: a whole clip in one pass, or a long file's windows.

`pieces()` yields text deltas as they are known (the whole text for a clip that fits
one pass; per window, in order, for a long file) and, once exhausted, `decoded` holds
the transcript: the model's own for one pass, the stitched one for windows. Whatever
ends it (done, an error, a disconnect, the iterator closed early) releases what it
holds (`release`, its decoded-sample reservation) exactly once.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable

from adapters_store.head_format import HeadRecord
from server.audio.reading import Audio
from server.config import LongformSettings
from server.longform.stitch import Stitcher
from server.longform.tails import Tails
from server.longform.windows import Window
from server.models.transcript import Decoded
from server.serving.batcher import Batcher, Result, Work
from server.serving.window_runner import Gone, run_windows

logger = logging.getLogger(__name__)

MakeWork = Callable[[Audio, float, int | None], Work]  # clip, deadline, window index


class TranscriptionRun:
    def __init__(
        self,
        batcher: Batcher,
        audio: Audio,
        windows: list[Window] | None,
        make_work: MakeWork,
        deadline: float,
        settings: LongformSettings,
        release: Callable[[], None],
        gone: Gone | None = None,
        *,
        task_id: str = "base",
        request_id: str = "-",
        head: HeadRecord | None = None,
        began: float = 0.0,
        tails: Tails | None = None,
    ) -> None:
        self.task_id, self.request_id, self.head, self.began = task_id, request_id, head, began
        self.batcher = batcher
        self.audio = audio
        self.windows = windows  # None: one pass
        self.make_work = make_work
        self.deadline = deadline  # one pass only; windows have their own
        self.settings = settings
        self.gone = gone
        self.tails = tails  # None: a window is never followed by a tail
        # released once: by close(), or when the run is collected unread (a streaming
        # response whose body never started)
        self._release = weakref.finalize(self, release)
        self.decoded: Decoded | None = None
        self.queue_s = 0.0
        self.compute_s = 0.0

    def close(self) -> None:
        self._release()

    async def pieces(self) -> AsyncIterator[str]:
        """Text deltas; their concatenation is the final text."""
        try:
            if self.windows is None:
                result = await self.batcher.submit(self.make_work(self.audio, self.deadline, None))
                self.queue_s, self.compute_s = result.queue_s, result.compute_s
                self.decoded = result.decoded
                yield result.decoded.text
                return
            async for delta in self._stitched():
                yield delta
        finally:
            self.close()

    def _tail(self, window: Window, result: Result) -> Window | None:
        assert self.tails is not None
        return self.tails.after(window, result.decoded, self.audio.rate)

    async def _stitched(self) -> AsyncIterator[str]:
        stitcher = Stitcher(self.audio.rate)
        began = time.monotonic()
        windows = run_windows(
            self.batcher,
            self.audio,
            self.windows or [],
            self.make_work,
            self.settings.windows_in_flight,
            self.settings.window_timeout_s,
            self.gone,
            self._tail if self.tails is not None else None,
        )
        frames = tails = 0
        async with contextlib.aclosing(windows) as done_windows:
            async for done in done_windows:
                had_text = bool(stitcher.words)
                new = stitcher.add(done.window, done.result.decoded)
                self.queue_s += done.result.queue_s
                self.compute_s += done.result.compute_s
                frames += done.result.decoded.num_frames
                tails += bool(done.window.follow)
                if new:
                    yield (" " if had_text else "") + " ".join(w.word for w in new)
        self.decoded = Decoded(
            text=stitcher.text,
            words=stitcher.words,
            num_frames=frames,
            segments=stitcher.segments,
            language=stitcher.language,
            frames=stitcher.frames(),
        )
        logger.info(
            "long-form: %.1f s of audio in %d windows (+%d tails), %.2f s (compute %.2f s)",
            self.audio.seconds,
            len(self.windows or []),
            tails,
            time.monotonic() - began,
            self.compute_s,
        )
