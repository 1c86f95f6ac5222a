"""Teacher-forced training on Whisper: loss falls, only the controller and heads move."""

from __future__ import annotations

import pytest
import torch

from adapters_store.head_format import HeadType
from server.data.synthetic import speak
from server.models.adapters import Controller
from server.models.hra import HRAModel
from server.models.whisper.model import load_whisper
from server.training.trainer import TrainConfig
from server.training.whisper.data import WhisperBatch, WhisperSet, sample_batch
from server.training.whisper.recipe import train_pools
from server.training.whisper.text import target_text
from server.training.whisper.trainer import IGNORE, batch_loss, teacher_forcing


@pytest.fixture(scope="module")
def whisper():
    model = load_whisper(window="cut")
    model.encoder.cut_margin_frames = 100  # 1 s of silence keeps the test fast
    return model


@pytest.fixture(scope="module")
def tiny_set(whisper) -> WhisperSet:
    """Two real spoken sentences (espeak-ng), one task each."""
    texts = ["Open the door.", "The red book."]
    feats = [whisper.encoder.featurize(speak(t, "en-us", 170, 50)) for t in texts]
    tokens = [whisper.tokenizer.encode(target_text(t)) for t in texts]
    return WhisperSet(feats, tokens, texts, [0, 1], ["t-a", "t-b"])


def test_teacher_forcing_scores_the_transcript_and_eot_never_the_prompt_or_end_time(whisper):
    tok = whisper.tokenizer
    ids = tok.encode(" Five.")
    batch = WhisperBatch(torch.zeros(2, 50, 80), torch.tensor([40, 50]), [ids, ids], torch.zeros(2))
    x, y = teacher_forcing(whisper, batch, [False, True])
    assert x[0, :2].tolist() == [tok.sot, tok.no_timestamps]
    assert [t for t in y[0].tolist() if t != IGNORE] == ids + [tok.eot]
    assert x[1, :2].tolist() == [tok.sot, tok.timestamp_begin]
    end = tok.timestamp_begin + 25  # 50 frames of 10 ms = 0.50 s = 25 timestamp steps
    assert x[1, 2 + len(ids)] == end  # the end time is read ...
    assert [t for t in y[1].tolist() if t != IGNORE] == ids + [tok.eot]  # ... never scored


def test_a_training_run_lowers_the_loss_and_leaves_every_whisper_weight_bit_identical(
    whisper, tiny_set
):
    torch.manual_seed(0)
    hra = HRAModel(whisper.encoder, 16)
    frozen = {k: v.clone() for k, v in whisper.state_dict().items()}
    controller_before = {k: v.clone() for k, v in hra.controller.state_dict().items()}
    batch = sample_batch(tiny_set, 0, 0, rows=2)

    def loss_with(heads) -> float:
        with torch.no_grad():
            return float(batch_loss(whisper, hra, batch, heads, 0))

    before = loss_with(None)  # a new (zero) head is plain Whisper
    config = TrainConfig(steps=6, lr=1e-2, warmup=1)
    pools, summary = train_pools(
        whisper, hra, tiny_set, HeadType.LINEAR, 0, config, rows=2, train_controller=True
    )
    after = loss_with(pools.head_batch(batch.tasks))
    assert after < 0.7 * before, (before, after)
    for name, tensor in whisper.state_dict().items():
        assert torch.equal(tensor, frozen[name]), name
    assert all(not p.requires_grad for p in whisper.parameters())
    moved = [
        not torch.equal(v, controller_before[k]) for k, v in hra.controller.state_dict().items()
    ]
    assert all(moved)
    assert summary["seconds_per_step"] > 0


def test_heads_trained_without_the_controller_leave_it_untouched(whisper, tiny_set):
    torch.manual_seed(0)
    hra = HRAModel(whisper.encoder, 16)
    hra.controller = Controller(whisper.encoder.hidden_dim, 16)
    before = {k: v.clone() for k, v in hra.controller.state_dict().items()}
    config = TrainConfig(steps=2, lr=1e-2, warmup=1)
    pools, _ = train_pools(whisper, hra, tiny_set, HeadType.FFN, 4, config, rows=2)
    for k, v in hra.controller.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert pools.pools["V2"].abs().sum() > 0  # the zero-initialised output side learned
