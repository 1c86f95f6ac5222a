"""In-memory training sets of features, and length-bucketed batch sampling.

Features are computed once per utterance up front (a few hundred MB for the
default recipe) so a training step is pure model compute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
import torchaudio
from tqdm import tqdm

from server.data.manifest import Utterance, load_audio
from server.models.ctc.features import SAMPLE_RATE, pad_features
from server.models.ctc.tokenizer import CharTokenizer


@dataclass
class FeatureSet:
    features: list[torch.Tensor]  # each [T_i, F]
    labels: list[torch.Tensor]  # each [U_i] CTC label ids
    tasks: list[int]  # index into task_ids
    texts: list[str]
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
        featurize,
        task_ids: list[str] | None = None,
        desc: str = "features",
        speeds: tuple[float, ...] = (1.0,),
        tempos: tuple[float, ...] = (),
        between: Callable[[], None] | None = None,
    ) -> FeatureSet:
        """`speeds` other than 1.0 add speed-perturbed copies (tempo and pitch together);
        each of `tempos` adds a copy of every one of those at that tempo, pitch kept.
        `between` runs before every utterance (a job's cancel and time-limit check: it
        may raise to stop)."""
        tokenizer = CharTokenizer()
        task_ids = task_ids or sorted({u.task for u in utterances})
        index = {t: i for i, t in enumerate(task_ids)}
        feats, labels, tasks, texts = [], [], [], []
        for u in tqdm(utterances, desc=desc, leave=False):
            if between is not None:
                between()
            waveform = load_audio(u.audio)
            label = torch.tensor(tokenizer.encode(u.text), dtype=torch.long)
            for speed in speeds:
                feat = featurize(_change_speed(waveform, speed))
                for variant in (feat, *(change_tempo(feat, tempo) for tempo in tempos)):
                    feats.append(variant)
                    labels.append(label)
                    tasks.append(index[u.task])
                    texts.append(tokenizer.normalize(u.text))
        return cls(feats, labels, tasks, texts, task_ids)


def _change_speed(waveform: torch.Tensor, speed: float) -> torch.Tensor:
    """Play `speed` times faster: resample to fewer samples, read at the old rate."""
    if speed == 1.0:
        return waveform
    rate = SAMPLE_RATE
    return torchaudio.functional.resample(waveform, int(rate * speed), rate)


def change_tempo(features: torch.Tensor, tempo: float) -> torch.Tensor:
    """Features [T, F] of the same speech `tempo` times faster, pitch and formants kept.

    Frames are resampled in time (linear interpolation), so only the duration
    changes: the speaker talking faster or slower, which speed perturbation
    cannot give without also moving the voice up or down.
    """
    frames = max(1, round(features.shape[0] / tempo))
    stretched = torch.nn.functional.interpolate(
        features.T[None], size=frames, mode="linear", align_corners=True
    )
    return stretched[0].T.contiguous()


@dataclass
class Batch:
    inputs: torch.Tensor  # [B, T, F]
    lengths: torch.Tensor  # [B]
    targets: torch.Tensor  # [sum U]
    target_lengths: torch.Tensor  # [B]
    tasks: torch.Tensor  # [B]
    indices: list[int]


def collate(data: FeatureSet, indices: list[int]) -> Batch:
    inputs, lengths = pad_features([data.features[i] for i in indices])
    labels = [data.labels[i] for i in indices]
    return Batch(
        inputs=inputs,
        lengths=lengths,
        targets=torch.cat(labels),
        target_lengths=torch.tensor([len(x) for x in labels]),
        tasks=torch.tensor([data.tasks[i] for i in indices]),
        indices=indices,
    )


def sample_batch(data: FeatureSet, step: int, seed: int, max_frames: int) -> Batch:
    """Batch for training step `step`, a pure function of (step, seed): resumable.

    A random anchor utterance plus its neighbours in length order, up to
    `max_frames` padded input frames, so padding stays small. Tasks mix freely.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    order = data.length_order
    pos = int(torch.randint(len(order), (), generator=g))
    count = max(1, max_frames // data.features[order[pos]].shape[0])
    start = max(0, min(pos - count // 2, len(order) - count))
    return collate(data, order[start : start + count])
