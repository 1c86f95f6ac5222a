"""Job creation asks the served model's kind what applies: CTC takes every hyperparameter,
Whisper refuses the CTC-only ones (their defaults pass), other kinds train no jobs."""

from __future__ import annotations

import pytest

from server.errors import InvalidRequest, UnsupportedHyperparameter
from server.jobs.model_kinds import refuse_unsupported
from server.jobs.records import Hyperparameters
from server.models.registry import HF_CTC, HRA_CTC, WHISPER

CTC_ONLY = {"vocabulary_from_data": True, "tempos": (0.9, 1.1), "max_frames": 8000}


def test_a_ctc_model_takes_every_hyperparameter():
    refuse_unsupported(HRA_CTC, Hyperparameters(steps=10, **CTC_ONLY))


@pytest.mark.parametrize("name", sorted(CTC_ONLY))
def test_a_whisper_model_refuses_each_ctc_only_hyperparameter_by_name(name):
    with pytest.raises(UnsupportedHyperparameter, match=f"^{name} does not apply to Whisper"):
        refuse_unsupported(WHISPER, Hyperparameters(steps=10, **{name: CTC_ONLY[name]}))


def test_a_whisper_model_takes_the_defaults_speeds_and_either_head_type():
    hp = Hyperparameters(steps=10, head_type="ffn", rank=16, speeds=(0.9, 1.0, 1.1))
    refuse_unsupported(WHISPER, hp)


def test_a_kind_without_a_job_trainer_is_refused_at_creation():
    with pytest.raises(InvalidRequest, match="hra_ctc and whisper") as refused:
        refuse_unsupported(HF_CTC, Hyperparameters(steps=10))
    assert refused.value.code == "invalid_request"
