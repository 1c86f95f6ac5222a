"""Backbone + controller checkpoints and the fingerprint every head is bound to.

A head is only valid for the exact backbone and controller it was trained
against, so the fingerprint hashes every one of their tensors (name, dtype,
shape, bytes). Weights are safetensors; the architecture is JSON metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from adapters_store.families import make_head_spec
from adapters_store.head_format import HeadSpec
from server.models.ctc.conformer import ConformerConfig, ConformerCTC
from server.models.hra import HRAModel


def fingerprint(model: HRAModel) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(_frozen_state(model).items()):
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}:{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


def head_spec(
    model: HRAModel, fp: str | None = None, max_ranks: Mapping[str, int] | None = None
) -> HeadSpec:
    """What heads must match to serve on `model`: its fingerprint, shapes and max ranks.

    max_ranks: head type -> largest rank (Settings.heads.max_ranks); unset, 64 each.
    """
    return make_head_spec(
        fp or fingerprint(model),
        model.backbone.hidden_dim,
        model.controller.dim,
        model.backbone.num_layers,
        max_ranks,
    )


def save_model(model: HRAModel, path: str | Path) -> str:
    """Write backbone + controller; returns the fingerprint."""
    fp = fingerprint(model)
    metadata = {
        "backbone": json.dumps(model.backbone.config_dict()),
        "controller_dim": str(model.controller.dim),
        "fingerprint": fp,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in _frozen_state(model).items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)
    return fp


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[HRAModel, str]:
    """Rebuild from a checkpoint, in eval mode; returns the model and its fingerprint."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    model = HRAModel(
        build_backbone(json.loads(metadata["backbone"])), int(metadata["controller_dim"])
    )
    model.load_state_dict(load_file(str(path)), strict=False)
    model.to(device).eval()
    fp = fingerprint(model)
    if fp != metadata["fingerprint"]:
        raise ValueError(
            f"checkpoint {path} is corrupt: fingerprint {fp} != {metadata['fingerprint']}"
        )
    return model, fp


def build_backbone(config: dict) -> torch.nn.Module:
    config = dict(config)
    kind = config.pop("type")
    if kind == "conformer_ctc":
        return ConformerCTC(ConformerConfig(**config))
    if kind == "wav2vec2":
        from server.models.hf.wav2vec2 import Wav2Vec2Backbone

        return Wav2Vec2Backbone.from_config(config)
    if kind == "hf_ctc":
        from server.models.hf.ctc import HfCtcBackbone

        return HfCtcBackbone.from_config(config)
    if kind == "nemo_ctc":
        from server.models.nemo.ctc import NemoCtcBackbone

        return NemoCtcBackbone.from_config(config)
    raise ValueError(f"unknown backbone type {kind!r}")


def _frozen_state(model: HRAModel) -> dict[str, torch.Tensor]:
    """Everything heads depend on: backbone and controller, buffers included."""
    return {k: v for k, v in model.state_dict().items() if "num_batches_tracked" not in k}
