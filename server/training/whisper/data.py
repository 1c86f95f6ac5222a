"""Whisper training sets: cached log-mels, target token ids, and length-grouped batches.

Log-mels are computed once per utterance (the encoder cannot be cached: the heads
act inside it). A batch is `rows` utterances of similar length, a pure function of
(step, seed) so a stopped run resumes exactly. Every row costs its clip plus the
cut window's silence margin, so a row count (not a frame budget) bounds the step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
from tqdm import tqdm

from server.data.manifest import Utterance, load_audio
from server.models.whisper.model import WhisperModel
from server.training.data import _change_speed
from server.training.whisper.text import target_text


@dataclass
class WhisperSet:
    features: list[torch.Tensor]  # each [T_in, 80] log-mel of the clip's frames
    tokens: list[list[int]]  # each the target transcript's token ids (no prompt, no eot)
    texts: list[str]  # reference transcripts as given
    tasks: list[int]  # index into task_ids
    task_ids: list[str]

    def __len__(self) -> int:
        return len(self.features)

    @cached_property
    def length_order(self) -> list[int]:
        return sorted(range(len(self)), key=lambda i: self.features[i].shape[0])

    @classmethod
    def build(
        cls,
        utterances: list[Utterance],
        whisper: WhisperModel,
        task_ids: list[str] | None = None,
        speeds: tuple[float, ...] = (1.0,),
        max_tokens: int = 200,
        desc: str = "features",
        between: Callable[[], None] | None = None,
    ) -> WhisperSet:
        """Transcripts longer than `max_tokens` tokens are refused (decoder context 448).
        `between` runs before every utterance (it may raise to stop a job)."""
        task_ids = task_ids or sorted({u.task for u in utterances})
        index = {t: i for i, t in enumerate(task_ids)}
        out = cls([], [], [], [], task_ids)
        for u in tqdm(utterances, desc=desc, leave=False):
            if between is not None:
                between()
            if len(u.text) > 16 * max_tokens:  # bounded before the tokenizer sees it
                raise ValueError(f"{u.audio}: transcript of {len(u.text)} characters")
            ids = whisper.tokenizer.encode(target_text(u.text))
            if not ids or len(ids) > max_tokens:
                raise ValueError(f"{u.audio}: transcript of {len(ids)} tokens (1-{max_tokens})")
            waveform = load_audio(u.audio)
            for speed in speeds:
                out.features.append(whisper.encoder.featurize(_change_speed(waveform, speed)))
                out.tokens.append(ids)
                out.texts.append(u.text)
                out.tasks.append(index[u.task])
        return out

    def subset(self, task_ids: list[str]) -> WhisperSet:
        """Only `task_ids`' utterances, task indices renumbered in that order."""
        keep = {self.task_ids.index(t): i for i, t in enumerate(task_ids)}
        rows = [i for i, t in enumerate(self.tasks) if t in keep]
        return WhisperSet(
            [self.features[i] for i in rows],
            [self.tokens[i] for i in rows],
            [self.texts[i] for i in rows],
            [keep[self.tasks[i]] for i in rows],
            list(task_ids),
        )


@dataclass
class WhisperBatch:
    inputs: torch.Tensor  # [B, T_in, 80] zero-padded log-mels
    lengths: torch.Tensor  # [B]
    tokens: list[list[int]]
    tasks: torch.Tensor  # [B]


def collate(data: WhisperSet, indices: list[int]) -> WhisperBatch:
    feats = [data.features[i] for i in indices]
    return WhisperBatch(
        inputs=torch.nn.utils.rnn.pad_sequence(feats, batch_first=True),
        lengths=torch.tensor([f.shape[0] for f in feats]),
        tokens=[data.tokens[i] for i in indices],
        tasks=torch.tensor([data.tasks[i] for i in indices]),
    )


def sample_batch(data: WhisperSet, step: int, seed: int, rows: int) -> WhisperBatch:
    """A random anchor and its neighbours in length order: `rows` clips of similar length."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    order = data.length_order
    count = min(rows, len(order))
    pos = int(torch.randint(len(order), (), generator=g))
    start = max(0, min(pos - count // 2, len(order) - count))
    return collate(data, order[start : start + count])
