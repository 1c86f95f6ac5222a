"""The one way work reaches the engine: file requests, SSE streams and live passes.

`open` resolves the head with the caller's rights, decodes and admits the audio and
returns a TranscriptionRun (server/serving/run.py) that transcribes as its pieces are
read; `transcribe` reads them all. Audio longer than one window is cut into windows.
Every refusal is raised before any text: a stream starts only for admitted audio.
`live_pass` is one pass of a live stream (server/live/session.py) through the same
admission and batcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import replace

from adapters_store.head_format import HeadRecord
from server.audio.reading import Audio, frames_to_hold, read_audio
from server.auth import OPEN, Principal
from server.config import Settings
from server.longform.budget import SampleBudget
from server.longform.policy import check_windows, speech_gate, tails, window_plan
from server.models.transcript import Decoded
from server.observability.metrics import Metrics
from server.serving.admission import Admission
from server.serving.batcher import Batcher, Work
from server.serving.heads import HeadRegistry
from server.serving.request import Transcription, TranscriptionRequest
from server.serving.run import TranscriptionRun
from server.serving.window_runner import Gone


class TranscriptionService:
    def __init__(
        self,
        settings: Settings,
        heads: HeadRegistry,
        batcher: Batcher,
        admission: Admission,
        metrics: Metrics,
        languages: tuple[str, ...],
        max_seconds: float | None,
    ) -> None:
        self.settings, self.heads, self.batcher = settings, heads, batcher
        self.admission, self.metrics, self.languages = admission, metrics, languages
        self.budget = SampleBudget(
            settings.longform.max_held_samples, settings.longform.max_held_samples_per_tenant
        )
        # long audio is cut into windows that fit one pass (Whisper: 30 s) and stitched by
        # word times (every window asks for them: see open)
        self.window_plan = window_plan(settings.longform, max_seconds)
        self.speech_gate = speech_gate(settings.longform)  # clicks and steady noise: no window
        self.tails = tails(settings.longform, max_seconds)

    async def transcribe(
        self, request: TranscriptionRequest, caller: Principal = OPEN, gone: Gone | None = None
    ) -> Transcription:
        run = await self.open(request, caller, gone)
        async with contextlib.aclosing(run.pieces()) as pieces:
            async for _ in pieces:
                pass
        return self.finish(run)

    async def open(
        self, request: TranscriptionRequest, caller: Principal = OPEN, gone: Gone | None = None
    ) -> TranscriptionRun:
        began = time.monotonic()
        request_id = uuid.uuid4().hex[:16]
        options = request.options(self.languages)
        head = await self.heads.resolve(request.task_id, caller)
        tenant = caller.acting_tenant
        hold, rate = await asyncio.to_thread(frames_to_hold, request.audio, self.settings.audio)
        plan = self.window_plan
        long = plan.needs_cutting(hold, rate)  # what the header says
        reservation = self.budget.reserve(hold if long else 0, tenant)
        try:
            decoded = await asyncio.to_thread(read_audio, request.audio, self.settings.audio)
            got = decoded.samples.shape[0]
            if plan.needs_cutting(got, decoded.rate) and not long:
                reservation = self.budget.reserve(got, tenant)  # its header said less
            reservation.shrink(got)
            windows = None
            if plan.needs_cutting(got, decoded.rate):
                # one pass over the file's energy: off the event loop
                windows = await asyncio.to_thread(
                    plan.plan, decoded.samples, decoded.rate, self.speech_gate
                )
                check_windows(self.settings.longform, windows, got / decoded.rate)
                for longest in sorted(windows, key=lambda w: w.start - w.end)[:1]:
                    clip = Audio(decoded.samples[longest.start : longest.end], decoded.rate)
                    self.admission.check(clip, head)  # what each window costs, not the file
            else:
                self.admission.check(decoded, head)
        except BaseException:
            reservation.release()
            raise
        window_options = replace(options, words=True)

        def make_work(clip: Audio, deadline: float, index: int | None) -> Work:
            if index is None:
                return Work(clip, head, deadline, request_id, tenant, options)
            # a window is stitched by its words' times: asked for whatever the client asked
            # (Whisper aligns only on request; the response shows them only if asked)
            return Work(
                clip, head, deadline, f"{request_id}/{index}", tenant, window_options, request_id
            )

        return TranscriptionRun(
            self.batcher,
            decoded,
            windows,
            make_work,
            began + self.settings.batch.request_timeout_s,
            self.settings.longform,
            reservation.release,
            gone,
            task_id=request.task_id,
            request_id=request_id,
            head=head,
            began=began,
            tails=self.tails,
        )

    def finish(self, run: TranscriptionRun) -> Transcription:
        """The transcript of a run whose pieces were all read."""
        decoded, seconds = run.decoded, run.audio.seconds
        assert decoded is not None, "finish() before the run's pieces were read"
        self.metrics.transcription_done(
            run.task_id, time.monotonic() - run.began, seconds, run.queue_s
        )
        return Transcription(
            task_id=run.task_id,
            head_version=run.head.meta.version if run.head else None,
            text=decoded.text,
            words=decoded.words,
            duration_s=seconds,
            queue_ms=1000 * run.queue_s,
            compute_ms=1000 * run.compute_s,
            request_id=run.request_id,
            segments=decoded.segments,
            avg_logprob=decoded.avg_logprob,
            no_speech_prob=decoded.no_speech_prob,
            frames=decoded.frames,
            language=decoded.language,
            temperature=decoded.temperature,
        )

    async def live_pass(
        self, audio: Audio, head: HeadRecord | None, caller: Principal, pass_id: str
    ) -> Decoded:
        """One pass of a live stream over an utterance so far: admitted like a file, an
        ordinary batcher item (it shares fused batches with every other request)."""
        self.admission.check(audio, head)
        deadline = time.monotonic() + self.settings.batch.request_timeout_s
        result = await self.batcher.submit(
            Work(audio, head, deadline, pass_id, caller.acting_tenant)
        )
        return result.decoded

    def live_final_done(self, task_id: str, elapsed_s: float, audio_s: float) -> None:
        self.metrics.transcription_done(task_id, elapsed_s, audio_s, 0.0)
