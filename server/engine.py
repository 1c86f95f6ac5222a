"""The engine: one per device, run from its own thread, one fused forward per batch.

It knows nothing of queues or HTTP: it takes a list of (audio, head) and
returns transcripts. Heads are placed in the device slot pool and the
mixed-task batch runs as one forward pass, or as a few when its lengths differ
so much that padding would cost more than another pass (server/length_buckets.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

import kernels
from adapters_store.head_format import HeadRecord
from server.audio import Audio
from server.length_buckets import CPU_FORWARD_OVERHEAD_FRAMES, NEVER_SPLIT, plan_buckets
from server.model.decoding import Decoded
from server.model.features import SAMPLE_RATE, pad_features
from server.model.hra import HRAModel
from server.model.inference import decode, vocabulary_of
from server.slot_pool import DeviceSlotPool

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineInput:
    audio: Audio  # resampled and featurized here: the engine's thread does all torch work
    head: HeadRecord | None  # None: backbone only (task "base")


@dataclass(frozen=True)
class EngineOutput:
    decoded: list[Decoded]  # in input order
    forward_passes: int


class Engine:
    def __init__(
        self, model: HRAModel, slots: DeviceSlotPool, forward_overhead_frames: int | None = None
    ) -> None:
        self.model = model.eval()
        self.slots = slots
        self.device = slots.device
        if forward_overhead_frames is None:  # measured on CPU; on a GPU, one pass per batch
            cpu = self.device.type == "cpu"
            forward_overhead_frames = CPU_FORWARD_OVERHEAD_FRAMES if cpu else NEVER_SPLIT
        self.forward_overhead_frames = forward_overhead_frames
        self.frame_seconds = model.backbone.frame_seconds
        on, reason = kernels.enable_triton(self.device)
        logger.info("Triton head kernel: %s (%s)", "on" if on else "off", reason)

    def featurize(self, audio: Audio) -> torch.Tensor:
        return self.model.backbone.featurize(audio.at_model_rate())

    @torch.inference_mode()
    def run(self, batch: list[EngineInput]) -> EngineOutput:
        features = [self.featurize(item.audio) for item in batch]
        buckets = plan_buckets([f.shape[0] for f in features], self.forward_overhead_frames)
        decoded: list[Decoded | None] = [None] * len(batch)
        for bucket in buckets:
            inputs, lengths = pad_features([features[i] for i in bucket])
            head_batch = self.slots.head_batch([batch[i].head for i in bucket])
            logits, out_lengths = self.model(
                inputs.to(self.device), lengths.to(self.device), head_batch
            )
            vocabularies = [vocabulary_of(batch[i].head) for i in bucket]
            for i, text in zip(bucket, decode(logits, out_lengths, vocabularies)):
                decoded[i] = text
        return EngineOutput(decoded, len(buckets))

    def warm_up(self) -> None:
        """One tiny forward so the first request does not pay for lazy init."""
        self.run([EngineInput(Audio(torch.zeros(SAMPLE_RATE), SAMPLE_RATE), None)])


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
