"""One live stream: client events in, VAD utterances through the shared batcher, events out.

How the model streams: the CTC model re-runs over the utterance so far every
`partial_hop_ms` of new speech, or every 1 / `partial_audio_per_s` of the utterance when
that is longer (full left context, bounded by `max_utterance_s`, a forced endpoint; so
partials re-decode at most `partial_audio_per_s` seconds of audio per second of stream,
`hra_stream_decoded_audio_seconds_total` counts it), and once more over the whole
utterance when it ends: that last pass
is the final transcript, so a final equals the offline decode of the same utterance
(docs/results.md, Live streaming). Every pass is an ordinary batcher Work item, so a
live stream's next chunk joins the same fused mixed-task batches as file requests.

Per stream at most one pass is in flight: a partial due while one runs is merged into
the next (it takes the newest audio), a partial still in flight when its utterance ends
is cancelled (the final replaces it), and ended utterances queue for their finals
(at most `max_pending_finals`). The utterance's head is resolved, with the caller's
rights, when its speech starts and is kept to its final: a head replaced mid-stream
applies from the next utterance.

Server events: transcription_session.created / .updated, input_audio_buffer.
speech_started / speech_stopped / committed / cleared, conversation.item.
input_audio_transcription.delta (partial: `delta`, plus the whole hypothesis in `text`)
and .completed (final: `transcript`, `words` with stream-relative times), error.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from adapters_store.head_format import HeadRecord
from server.audio.reading import Audio
from server.auth import Principal
from server.config import StreamingSettings
from server.errors import AudioTooShort, HraError
from server.live import protocol
from server.live.errors import (
    InvalidEvent,
    MessageTooLarge,
    StreamIdle,
    StreamOverloaded,
    StreamTooFast,
)
from server.live.hub import StreamHub
from server.live.segmenter import Ended, PartialDue, Segmenter, SpeechStarted, VadConfig
from server.models.transcript import Decoded
from server.serving.request import BASE_TASK
from server.serving.transcription import TranscriptionService

logger = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[str | bytes | None]]  # None: the client went away
Send = Callable[[dict], Awaitable[None]]  # raises SlowConsumer past the send timeout


@dataclass(eq=False)
class _Utterance:
    item_id: str
    start: int  # stream sample position
    head: asyncio.Task  # -> HeadRecord | None, resolved when speech started
    task_id: str
    partial: str = ""
    ended: Ended | None = None
    endpoint: int = 0  # stream position when the utterance was ended
    admitted: float = field(default_factory=time.monotonic)


class LiveStream:
    def __init__(
        self,
        transcription: TranscriptionService,
        hub: StreamHub,
        caller: Principal,
        send: Send,
        task_id: str = BASE_TASK,
    ) -> None:
        self.transcription, self.hub, self.caller = transcription, hub, caller
        self._send = send
        self.settings: StreamingSettings = transcription.settings.streaming
        self.id = "sess_" + uuid.uuid4().hex[:16]
        self.task_id = task_id
        self.rate = protocol.DEFAULT_RATE
        self.silence_ms = self.settings.silence_ms
        self.prefix_ms = self.settings.prefix_padding_ms
        self.segmenter = self._segmenter()
        self.received = 0  # samples received
        self.opened = time.monotonic()
        self._items = 0
        self._previous_item: str | None = None
        self._current: _Utterance | None = None
        self._finals: deque[_Utterance] = deque()
        self._partial_due = False
        self._partial_pass: asyncio.Future | None = None  # the partial in flight, if any
        self._wake = asyncio.Event()

    # --- the stream's life: run() until the client leaves or a fatal error ---

    async def run(self, receive: Receive) -> str:
        """Serve the stream; returns why it ended (disconnect, or a fatal error's code)."""
        await self.transcription.heads.resolve(self.task_id, self.caller)  # 404 before any audio
        await self._send({"type": "transcription_session.created", "session": self._session()})
        worker = asyncio.create_task(self._work(), name=f"stream-{self.id}")
        try:
            while True:
                incoming = asyncio.ensure_future(receive())
                done, _ = await asyncio.wait(
                    {incoming, worker},
                    timeout=self.settings.idle_timeout_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if worker in done:
                    incoming.cancel()
                    worker.result()  # raises what stopped it (a fatal StreamError)
                if incoming not in done:
                    incoming.cancel()
                    raise StreamIdle(f"nothing received for {self.settings.idle_timeout_s:g} s")
                message = incoming.result()
                if message is None:
                    return "disconnect"
                try:
                    await self._handle(message)
                except HraError as exc:  # refuses this one event, unless it ends the stream
                    if exc.fatal or not exc.public:
                        raise
                    await self._error(exc)
        finally:
            worker.cancel()
            for utterance in (self._current, *self._finals):
                if utterance is not None:
                    utterance.head.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    async def _handle(self, message: str | bytes) -> None:
        if len(message) > self.settings.max_message_bytes:
            raise MessageTooLarge(
                f"message of {len(message)} bytes; the limit is {self.settings.max_message_bytes}"
            )
        if isinstance(message, bytes):
            return await self._append(protocol.pcm16(message))
        event = protocol.parse(message)
        kind = event["type"]
        if kind == "input_audio_buffer.append":
            await self._append(protocol.audio_of(event))
        elif kind in ("transcription_session.update", "session.update"):
            await self._update(protocol.session_update(event))
        elif kind == "input_audio_buffer.commit":
            await self._dispatch(self.segmenter.commit())
        elif kind == "input_audio_buffer.clear":
            self.segmenter.clear()
            self._current = None  # its pass in flight, if any, is discarded
            await self._send({"type": "input_audio_buffer.cleared"})
        else:
            raise InvalidEvent(f"unknown event type {kind[:64]!r}")

    async def _update(self, update: protocol.SessionUpdate) -> None:
        if update.task_id is not None and update.task_id != self.task_id:
            await self.transcription.heads.resolve(
                update.task_id, self.caller
            )  # 404 leaves it as was
            self.task_id = update.task_id  # from the next utterance on
        if update.rate is not None and update.rate != self.rate:
            if self.received:
                raise InvalidEvent("the sample rate is set before the first audio")
            self.rate = update.rate
        self.silence_ms = update.silence_ms or self.silence_ms
        self.prefix_ms = update.prefix_ms if update.prefix_ms is not None else self.prefix_ms
        if not self.segmenter.in_speech:
            position = self.segmenter.position
            self.segmenter = self._segmenter()
            self.segmenter.position = position
        await self._send({"type": "transcription_session.updated", "session": self._session()})

    async def _append(self, samples: np.ndarray) -> None:
        self.received += samples.size
        ahead = self.received / self.rate - (time.monotonic() - self.opened)
        if ahead > self.settings.max_ahead_s:
            raise StreamTooFast(
                f"audio is {ahead:.1f} s ahead of real time; a live stream may run "
                f"{self.settings.max_ahead_s:g} s ahead"
            )
        await self._dispatch(self.segmenter.feed(samples))

    async def _dispatch(self, events: list) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                await self._started(event)
            elif isinstance(event, PartialDue):
                self._partial_due = True
                self._wake.set()
            else:
                await self._ended(event)

    async def _started(self, event: SpeechStarted) -> None:
        self._items += 1
        item_id = f"item_{self.id[5:]}_{self._items}"
        head = asyncio.ensure_future(self.transcription.heads.resolve(self.task_id, self.caller))
        self._current = _Utterance(item_id, event.start, head, self.task_id)
        await self._send(
            {
                "type": "input_audio_buffer.speech_started",
                "item_id": item_id,
                "audio_start_ms": self._ms(event.start),
            }
        )

    async def _ended(self, ended: Ended) -> None:
        utterance, self._current = self._current, None
        if utterance is None:  # cleared meanwhile
            return
        if len(self._finals) >= self.settings.max_pending_finals:
            raise StreamOverloaded(
                f"{len(self._finals)} utterances wait for their transcripts; the stream "
                "produces speech faster than it is transcribed"
            )
        utterance.ended = ended
        utterance.endpoint = self.segmenter.position
        self._finals.append(utterance)
        if self._partial_pass is not None and not self._partial_pass.done():
            self._partial_pass.cancel()  # leaves the queue (or its result is dropped)
        self._wake.set()
        item = utterance.item_id
        await self._send(
            {
                "type": "input_audio_buffer.speech_stopped",
                "item_id": item,
                "audio_end_ms": self._ms(ended.end),
            }
        )
        await self._send(
            {
                "type": "input_audio_buffer.committed",
                "item_id": item,
                "previous_item_id": self._previous_item,
            }
        )
        self._previous_item = item

    # --- the worker: one pass in flight per stream, finals first ---

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._finals or (self._partial_due and self._current is not None):
                if self._finals:
                    await self._final(self._finals.popleft())
                else:
                    self._partial_due = False
                    self._partial_pass = asyncio.ensure_future(self._partial(self._current))
                    try:
                        await self._partial_pass
                    except asyncio.CancelledError:
                        if asyncio.current_task().cancelling():
                            raise  # the stream is closing
                        # else its utterance ended: the final is what counts now

    async def _partial(self, utterance: _Utterance) -> None:
        samples, end = self.segmenter.snapshot(), self.segmenter.position
        began = time.monotonic()
        decoded = await self._decode(utterance, samples, final=False)
        if decoded is None or utterance is not self._current:  # ended meanwhile: final follows
            return
        self.hub.partial_latency.observe(time.monotonic() - began)
        text, previous = decoded.text, utterance.partial
        if text == previous:
            return
        utterance.partial = text
        extends = text.startswith(previous)
        self.hub.events.labels("partial").inc()
        await self._send(
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": utterance.item_id,
                "content_index": 0,
                "delta": text[len(previous) :] if extends else text,
                "replaces": not extends,
                "text": text,
                "audio_end_ms": self._ms(end),
            }
        )

    async def _final(self, utterance: _Utterance) -> None:
        ended = utterance.ended
        began = time.monotonic()
        decoded = await self._decode(utterance, ended.samples, final=True)
        if decoded is None:
            return
        head = await utterance.head  # resolved: _decode awaited it
        offset = ended.start / self.rate
        self.transcription.live_final_done(
            utterance.task_id, time.monotonic() - began, ended.samples.size / self.rate
        )
        self.hub.events.labels("final").inc()
        await self._send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": utterance.item_id,
                "content_index": 0,
                "transcript": decoded.text,
                "words": [
                    {
                        "word": w.word,
                        "start": round(offset + w.start_s, 3),
                        "end": round(offset + w.end_s, 3),
                    }
                    for w in decoded.words
                ],
                "task_id": utterance.task_id,
                "head_version": head.meta.version if head is not None else None,
                "audio_start_ms": self._ms(ended.start),
                "audio_end_ms": self._ms(ended.end),
                "endpoint_ms": self._ms(utterance.endpoint),
                "end_reason": ended.reason,
            }
        )

    async def _decode(self, utterance: _Utterance, samples: np.ndarray, final: bool):
        """One pass through the shared batcher; a refused or failed pass is an error event
        (a partial's only when it is not merely too short)."""
        try:
            # shielded: a partial cancelled at its utterance's end must not cancel the
            # lookup that the final awaits too
            head: HeadRecord | None = await asyncio.shield(utterance.head)
            audio = Audio(torch.from_numpy(samples), self.rate)
            kind = "final" if final else "partial"
            self.hub.decoded_audio.labels(kind).inc(samples.size / self.rate)
            decoded = await self.transcription.live_pass(
                audio, head, self.caller, utterance.item_id
            )
        except AudioTooShort:
            if final:
                return Decoded("", [], 0)
            return None
        except asyncio.CancelledError:
            raise
        except HraError as exc:  # this utterance alone fails
            if not exc.public:
                raise
            await self._error(exc, utterance.item_id)
            return None
        return decoded

    # --- helpers ---

    async def _error(self, exc: HraError, item_id: str | None = None) -> None:
        self.hub.events.labels("error").inc()
        event = protocol.error_event(exc)
        if item_id is not None:
            event["error"]["item_id"] = item_id
        await self._send(event)

    def _segmenter(self) -> Segmenter:
        s = self.settings
        return Segmenter(
            VadConfig(
                rate=self.rate,
                threshold_db=s.threshold_db,
                silence_ms=self.silence_ms,
                prefix_ms=self.prefix_ms,
                suffix_ms=s.suffix_padding_ms,
                margin_db=s.margin_db,
                hop_ms=s.partial_hop_ms,
                max_s=s.max_utterance_s,
                partial_ratio=s.partial_audio_per_s,
                steady_s=s.steady_noise_s,
                steady_db=s.steady_noise_db,
            )
        )

    def _session(self) -> dict:
        return {
            "id": self.id,
            "object": "realtime.transcription_session",
            "input_audio_format": "pcm16",
            "input_audio_sample_rate": self.rate,
            "input_audio_transcription": {"model": self.task_id},
            "turn_detection": {
                "type": "server_vad",
                "threshold_db": self.settings.threshold_db,
                "margin_db": self.settings.margin_db,
                "silence_duration_ms": self.silence_ms,
                "prefix_padding_ms": self.prefix_ms,
            },
        }

    def _ms(self, position: int) -> int:
        return round(1000 * position / self.rate)
