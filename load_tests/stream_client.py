"""A live-stream client for the load tests: sends PCM16 at the audio's own pace over
/v1/realtime and times every event against the moment its audio was sent."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field

import numpy as np
import websockets

PCM_RATE = 16_000


@dataclass
class StreamRun:
    task: str
    audio_s: float
    partial_latency_s: list[float] = field(default_factory=list)  # recv - send of last sample
    final_latency_s: list[float] = field(default_factory=list)  # from its speech's end + 100 ms
    endpoint_latency_s: list[float] = field(default_factory=list)  # from the endpoint decision
    finals: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    send_lag_s: float = 0.0  # worst lateness of a chunk against the audio's own clock
    closed: str = ""

    @property
    def transcript(self) -> str:
        return " ".join(t for t in self.finals if t)


def pcm16(wav: np.ndarray) -> bytes:
    return (np.clip(wav, -1.0, 1.0) * 32767).astype("<i2").tobytes()


async def stream(
    ws_url: str,
    task: str,
    wav: np.ndarray,
    chunk_ms: int = 100,
    realtime: bool = True,
    headers: dict | None = None,
    tail_s: float = 3.0,
    commit: bool = True,
) -> StreamRun:
    """Stream `wav` (float32 at 16 kHz) to `task`; commit at the end (if `commit`) and wait
    for the last final (at most `tail_s`)."""
    data = pcm16(wav)
    step = PCM_RATE * chunk_ms // 1000 * 2
    run = StreamRun(task, wav.size / PCM_RATE)
    sent_at: list[float] = []  # per chunk, when it was sent

    def sent_time(audio_ms: int) -> float | None:
        index = min(max(0, -(-audio_ms // chunk_ms) - 1), len(sent_at) - 1)
        return sent_at[index] if sent_at else None

    async with websockets.connect(
        f"{ws_url}/v1/realtime?model={task}", additional_headers=headers, max_size=1 << 22
    ) as ws:
        created = json.loads(await ws.recv())
        if created["type"] == "error":
            run.errors.append(created["error"]["code"])
            return run
        started = set()
        drained = asyncio.Event()  # the server has handled every message we sent

        async def reader() -> None:
            try:
                async for message in ws:
                    now = time.monotonic()
                    event = json.loads(message)
                    kind = event["type"]
                    if kind.endswith("transcription.delta"):
                        t = sent_time(event["audio_end_ms"])
                        if t is not None:
                            run.partial_latency_s.append(now - t)
                    elif kind.endswith("transcription.completed"):
                        t = sent_time(event["audio_end_ms"])
                        if t is not None:
                            run.final_latency_s.append(now - t)
                        t = sent_time(event.get("endpoint_ms", event["audio_end_ms"]))
                        if t is not None:
                            run.endpoint_latency_s.append(now - t)
                        run.finals.append(event["transcript"])
                        started.discard(event["item_id"])
                    elif kind == "transcription_session.updated":
                        drained.set()
                    elif kind == "input_audio_buffer.speech_started":
                        started.add(event["item_id"])
                    elif kind == "error":
                        run.errors.append(event["error"]["code"])
            except websockets.ConnectionClosed as exc:
                run.closed = str(exc.rcvd.code if exc.rcvd else "dropped")

        reading = asyncio.create_task(reader())
        t0 = time.monotonic()
        for i, offset in enumerate(range(0, len(data), step)):
            if realtime:
                due = t0 + i * chunk_ms / 1000
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                run.send_lag_s = max(run.send_lag_s, time.monotonic() - due)
            chunk = base64.b64encode(data[offset : offset + step]).decode()
            sent_at.append(time.monotonic())
            try:
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            except websockets.ConnectionClosed:
                break  # closed by the server: its error event says why
        else:
            if commit:
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        # answered in order: once it is, every chunk before it went through the VAD
        try:
            await ws.send(json.dumps({"type": "transcription_session.update", "session": {}}))
            await asyncio.wait_for(drained.wait(), tail_s)
        except (TimeoutError, websockets.ConnectionClosed):
            pass
        deadline = time.monotonic() + tail_s
        while started and not reading.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        reading.cancel()
    return run
