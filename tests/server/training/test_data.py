"""Training-set building: tempo perturbation changes duration only."""

from __future__ import annotations

import torch

from server.data.fsdd import load_fsdd
from server.models.ctc.features import LogMelFrontend
from server.training.data import FeatureSet, change_tempo


def test_change_tempo_shortens_the_frames_and_keeps_every_channels_profile():
    frames = torch.linspace(0, 1, 100)[:, None] * torch.arange(1, 65)[None, :]  # [100, 64]
    faster = change_tempo(frames, 1.25)
    slower = change_tempo(frames, 0.8)
    assert faster.shape == (80, 64) and slower.shape == (125, 64)
    # A linear ramp in time stays the same ramp, only sampled more or less often.
    torch.testing.assert_close(faster[-1], frames[-1])
    torch.testing.assert_close(faster[40], frames[0] + (frames[-1] - frames[0]) * 40 / 79)


def test_tempo_copies_are_added_for_every_speed_with_the_same_labels(fsdd_root):
    rows = load_fsdd(fsdd_root, range(1), ["george"])[:3]  # take 0 of "zero", "one", "two"
    data = FeatureSet.build(rows, LogMelFrontend(), speeds=(0.9, 1.0), tempos=(1.2, 1.4))
    assert len(data) == 3 * 2 * 3
    first = data.features[:3]  # speed 0.9 as is, then at tempo 1.2 and 1.4
    assert [f.shape[0] for f in first[1:]] == [round(first[0].shape[0] / t) for t in (1.2, 1.4)]
    assert all(torch.equal(data.labels[i], data.labels[0]) for i in range(6))
    assert data.texts[:6] == [data.texts[0]] * 6 and data.texts[6] != data.texts[0]
