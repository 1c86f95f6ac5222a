"""Checkpoints round-trip; the fingerprint binds heads to exact weights."""

from __future__ import annotations

import pytest
import torch

from adapters_store.errors import FingerprintMismatch
from adapters_store.head_format import HeadMetadata, HeadRecord, validate_head
from server.models.checkpoint import fingerprint, head_spec, load_model, save_model


def test_save_and_load_round_trip_keeps_outputs_and_fingerprint(tiny_model, tmp_path):
    fp = save_model(tiny_model, tmp_path / "m.safetensors")
    loaded, loaded_fp = load_model(tmp_path / "m.safetensors")
    assert loaded_fp == fp
    feats = torch.randn(1, 40, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(feats, torch.tensor([40]))[0], tiny_model(feats, torch.tensor([40]))[0]
        )


def test_any_weight_change_changes_the_fingerprint(tiny_model):
    before = fingerprint(tiny_model)
    with torch.no_grad():
        tiny_model.controller.recurrence[0] += 1e-3
    assert fingerprint(tiny_model) != before


def test_head_from_another_backbone_is_refused(tiny_model, default_model, default_store):
    model, fp = default_model
    head = default_store.get("fsdd-george")
    validate_head(head, head_spec(model, fp))  # the shipped head fits the shipped model
    foreign = HeadRecord(HeadMetadata("x", "linear", fingerprint(tiny_model)), head.tensors)
    with pytest.raises(FingerprintMismatch):
        validate_head(foreign, head_spec(model, fp))


def test_every_shipped_head_carries_the_shipped_fingerprint(default_model, default_store):
    model, fp = default_model
    spec = head_spec(model, fp)
    for task in default_store.task_ids():
        validate_head(default_store.get(task), spec)
