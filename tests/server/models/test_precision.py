"""Lower-precision backbones (HRA_BACKBONE_PRECISION): only the backbone changes, the
controller and heads stay float32, and transcripts of real speech barely move."""

from __future__ import annotations

import pydantic
import pytest
import torch

from adapters_store.disk_store import DiskStore
from adapters_store.head_batch import HeadBatch
from server.config import Settings, get_settings
from server.data.fsdd import TEST_TAKES, load_fsdd
from server.data.manifest import load_audio
from server.models.checkpoint import fingerprint, load_model
from server.models.ctc.features import pad_features
from server.models.ctc.inference import decode
from server.models.precision import apply_backbone_precision
from server.models.registry import load_recognizer

pytestmark = pytest.mark.slow  # loads the default model a few times (~15 s CPU)

CPU = torch.device("cpu")
QuantizedLinear = torch.ao.nn.quantized.dynamic.Linear


@pytest.fixture(scope="module")
def batch():
    """16 real FSDD test clips, each with its speaker's trained linear head."""
    settings = get_settings()
    model, _ = load_model(settings.model_dir / "model.safetensors")
    store = DiskStore(settings.model_dir / "heads")
    utts = load_fsdd(settings.fsdd_root, TEST_TAKES)[::40][:16]
    feats = [model.backbone.featurize(load_audio(u.audio)) for u in utts]
    heads = HeadBatch.from_heads([("linear", store.get(u.task).tensors) for u in utts])
    return (*pad_features(feats), heads)


def _texts(model, batch):
    inputs, lengths, heads = batch
    with torch.inference_mode():
        logits, out_lengths = model(inputs, lengths, heads)
    frame = model.backbone.frame_seconds
    return logits, [d.text for d in decode(logits, out_lengths, [()] * len(lengths), frame)]


@pytest.mark.parametrize("precision", ["int8", "bfloat16"])
def test_low_precision_backbone_keeps_controller_float32_and_transcripts(precision, batch):
    settings = get_settings()
    reference, fp = load_model(settings.model_dir / "model.safetensors")
    model, _ = load_model(settings.model_dir / "model.safetensors")
    controller_before = {k: v.clone() for k, v in model.controller.state_dict().items()}
    apply_backbone_precision(model, precision, CPU)
    assert type(model.controller.proj) is torch.nn.Linear
    for name, tensor in model.controller.state_dict().items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, controller_before[name])
    if precision == "int8":
        kinds = {type(m) for m in model.backbone.modules()}
        assert QuantizedLinear in kinds and torch.nn.Linear not in kinds
    ref_logits, ref_texts = _texts(reference, batch)
    logits, texts = _texts(model, batch)
    assert logits.dtype == torch.float32
    assert 0 < float((logits - ref_logits).abs().max()) < 2.0  # changed, but slightly
    assert sum(a == b for a, b in zip(texts, ref_texts)) >= len(texts) - 1
    assert fingerprint(reference) == fp  # heads bind to the float32 checkpoint


def test_served_recognizer_uses_the_configured_precision_and_float32_by_default():
    plain, fp = load_recognizer(Settings(), CPU)
    quantized, fp_q = load_recognizer(Settings(backbone_precision="int8"), CPU)
    assert fp_q == fp
    kinds = lambda r: {type(m) for m in r.model.backbone.modules()}  # noqa: E731
    assert QuantizedLinear in kinds(quantized)
    assert QuantizedLinear not in kinds(plain)


def test_unknown_precision_is_rejected_at_start_up(monkeypatch):
    monkeypatch.setenv("HRA_BACKBONE_PRECISION", "fp4")
    with pytest.raises(pydantic.ValidationError):
        Settings()
    with pytest.raises(ValueError, match="unknown backbone precision"):
        apply_backbone_precision(
            load_model(get_settings().model_dir / "model.safetensors")[0], "fp4", CPU
        )  # type: ignore[arg-type]
