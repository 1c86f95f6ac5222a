"""Resampling to the models' rate, at a bounded cost for ANY input rate (see `resample`).

Polyphase with a bounded number of phases: the filter table has at most MAX_PHASES rows
and each output sample costs ~12 multiply-adds per input or output sample, whichever are
more; filter tables are kept across calls in a byte-bounded LRU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

from server.bounded_cache import ByteBoundedLRU

SAMPLE_RATE = 16_000
MAX_PHASES = 1_024
"""Most filter phases (p of the ratio p/q): 11,025 Hz needs 640; every rate whose
exact ratio needs more is approximated (relative rate error < 1e-5, tested)."""
LOWPASS_FILTER_WIDTH = 6  # zero crossings each side: torchaudio's default
ROLLOFF = 0.99  # cutoff as a fraction of the lower Nyquist rate: torchaudio's default
PLAN_CACHE_BYTES = 16 * 1024 * 1024
"""Filter tables kept across calls; a table is at most ~1.2 MB (384 kHz)."""


@dataclass(frozen=True)
class ResamplePlan:
    """Output sample n sits at input position n*down/up; its value is the input's
    2*width+2 taps around floor(n*down/up) weighted by row (n*down mod up) of `table`.

    Semantics (what torchaudio.functional.resample computes, default filter):
        out[n] = sum_u x[u] * h(u/down - n/up),  u over the input's samples
        h(d)   = (base/down) * sinc(base*d) * cos(pi*base*d / (2*lpw))**2  for |base*d| < lpw
        base   = min(up, down) * ROLLOFF
    """

    up: int  # p: output samples per `down` input samples
    down: int  # q
    width: int  # taps each side of the centre, in input samples
    table: torch.Tensor  # [up, 2*width + 2] float32

    @property
    def taps(self) -> int:
        return self.table.shape[1]

    @property
    def nbytes(self) -> int:
        return self.table.numel() * self.table.element_size()


def resample_ratio(orig_rate: int) -> tuple[int, int]:
    """(up, down): SAMPLE_RATE/orig_rate exactly when that needs at most MAX_PHASES
    phases (every common rate), else the closest fraction that does."""
    if orig_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {orig_rate}")
    ratio = Fraction(orig_rate, SAMPLE_RATE).limit_denominator(MAX_PHASES)  # down/up
    return ratio.denominator, ratio.numerator


def resampled_length(samples: int, orig_rate: int) -> int:
    """Samples `resample` makes from `samples` at `orig_rate` (its ratio may be approximated)."""
    if orig_rate == SAMPLE_RATE:
        return samples
    up, down = resample_ratio(orig_rate)
    return -(-samples * up // down)


def _build_plan(ratio: tuple[int, int]) -> ResamplePlan:
    up, down = ratio
    base = min(up, down) * ROLLOFF
    width = math.ceil(LOWPASS_FILTER_WIDTH * down / base)
    phase = torch.arange(up, dtype=torch.float64)[:, None] / up  # [up, 1]
    k = torch.arange(-width, width + 2, dtype=torch.float64)[None, :]  # [1, taps]
    t = ((k - phase) * base / down).clamp(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
    window = torch.cos(t * math.pi / LOWPASS_FILTER_WIDTH / 2) ** 2
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(math.pi * t) / (math.pi * t))
    table = (sinc * window * (base / down)).float()  # [up, taps]
    return ResamplePlan(up, down, width, table)


_plans: ByteBoundedLRU[tuple[int, int], ResamplePlan] = ByteBoundedLRU(
    PLAN_CACHE_BYTES, _build_plan, lambda plan: plan.nbytes
)


def resample_plan(orig_rate: int) -> ResamplePlan:
    return _plans.get_or_build(resample_ratio(orig_rate))


def resample(waveform: torch.Tensor, orig_rate: int) -> torch.Tensor:
    """Mono float waveform [N] at `orig_rate` -> [ceil(N*up/down)] at SAMPLE_RATE.

    torchaudio's filter (default parameters; same output within 2e-5 where the ratio is
    exact), applied per output sample: each costs 2*width+2 multiply-adds, width ~ 6 *
    max(1, orig_rate/16000), so the work is ~12 per input or output sample, whichever
    are more, and the filter table has at most MAX_PHASES rows, for any rate. (torchaudio's
    own kernel is [16000/g, orig_rate/g + 2*width] for g = gcd(orig_rate, 16000): 44,101 Hz
    builds 0.7 G numbers, 383,987 Hz 6.1 G.)
    """
    if orig_rate == SAMPLE_RATE:
        return waveform
    plan = resample_plan(orig_rate)
    n_out = resampled_length(waveform.shape[0], orig_rate)
    out = torch.empty(n_out, dtype=torch.float32)
    if n_out == 0:
        return out
    xpad = F.pad(waveform.to(torch.float32), (plan.width, plan.width + plan.down + 2))
    for j in range(min(plan.up, n_out)):  # outputs j, j+up, j+2up, ... share one phase
        count = -(-(n_out - j) // plan.up)
        start = j * plan.down // plan.up
        row = plan.table[(j * plan.down) % plan.up]  # [taps]
        if plan.down >= plan.taps:  # windows do not overlap: a strided view, no copy
            windows = xpad.as_strided((count, plan.taps), (plan.down, 1), start)
            out[j :: plan.up] = torch.mv(windows, row)
        else:  # overlapping windows (up <= 256 here): one strided conv
            segment = xpad[start : start + (count - 1) * plan.down + plan.taps][None, None]
            filtered = F.conv1d(segment, row[None, None], stride=plan.down)  # [1, 1, count]
            out[j :: plan.up] = filtered[0, 0]
    return out
