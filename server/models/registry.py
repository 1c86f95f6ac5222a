"""The served model of a model directory: what it is, loaded once, with its fingerprint.

A model directory says what it holds:
    model.safetensors                 an HRA CTC checkpoint (server/models/checkpoint.py)
    manifest.json, "kind": "whisper"  pinned Whisper weights (server/models/whisper/weights.py)
                                      + controller.safetensors: the shared HRA controller over
                                      the encoder, trained by `hra build-whisper`
                                      (server/training/whisper/; from the seeded init under
                                      `controller_seed`); the manifest's `window` is the
                                      encoder window it was trained and serves in
    manifest.json, "kind": "hf_ctc"   a local Hugging Face CTC folder ("checkpoint": a path,
                                      relative to the model directory or absolute;
                                      server/models/hf/ctc.py) + controller.safetensors of
                                      "controller_dim", as for Whisper
Heads are bound to the fingerprint of backbone + controller, so head_spec (and every
upload's validation) works unchanged for either kind.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from server.config import Settings
from server.models.adapters import Controller
from server.models.checkpoint import fingerprint, load_model
from server.models.ctc.recognizer import CtcRecognizer
from server.models.hra import HRAModel
from server.models.precision import apply_backbone_precision
from server.models.recognizer import Recognizer

logger = logging.getLogger(__name__)

CONTROLLER_FILE = "controller.safetensors"


def model_kind(model_dir: Path) -> str:
    manifest = Path(model_dir) / "manifest.json"
    if manifest.is_file():
        return str(json.loads(manifest.read_text()).get("kind", "hra_ctc"))
    return "hra_ctc"


def load_recognizer(settings: Settings, device: torch.device) -> tuple[Recognizer, str]:
    """settings.model_dir's model on `device`, in eval mode, and its fingerprint."""
    kind = model_kind(settings.model_dir)
    if kind == "whisper":
        return _load_whisper(settings, device)
    if kind == "hf_ctc":
        recognizer, fp = _load_hf_ctc(settings.model_dir, device)
        apply_backbone_precision(recognizer.model, settings.backbone_precision, device)
        return recognizer, fp
    if kind != "hra_ctc":
        raise ValueError(f"{settings.model_dir}/manifest.json: unknown model kind {kind!r}")
    model, fp = load_model(settings.model_dir / "model.safetensors", device)
    apply_backbone_precision(model, settings.backbone_precision, device)
    return CtcRecognizer(model), fp


def _load_whisper(settings: Settings, device: torch.device) -> tuple[Recognizer, str]:
    from server.models.whisper.model import load_whisper_from_settings
    from server.models.whisper.recognizer import WhisperRecognizer

    model_dir = settings.model_dir
    manifest = json.loads((model_dir / "manifest.json").read_text())
    whisper = load_whisper_from_settings(settings, model_dir)
    hra = HRAModel(whisper.encoder, int(manifest["controller_dim"]))
    hra.controller.load_state_dict(load_file(str(model_dir / CONTROLLER_FILE)))
    whisper.to(device).eval()
    hra.to(device).eval()
    fp = fingerprint(hra)
    expected = manifest.get("fingerprint")
    if expected and fp != expected:
        raise ValueError(f"{model_dir}: fingerprint {fp} != manifest's {expected}")
    recognizer = WhisperRecognizer(
        whisper, hra, settings.whisper.max_tokens, fallback=settings.whisper.temperature_fallback
    )
    return recognizer, fp


def _load_hf_ctc(model_dir: Path, device: torch.device) -> tuple[Recognizer, str]:
    from server.models.hf.ctc import HfCtcBackbone

    manifest = json.loads((model_dir / "manifest.json").read_text())
    backbone = HfCtcBackbone.from_folder(model_dir / str(manifest["checkpoint"]))
    hra = HRAModel(backbone, int(manifest["controller_dim"]))
    hra.controller.load_state_dict(load_file(str(model_dir / CONTROLLER_FILE)))
    hra.to(device).eval()
    return CtcRecognizer(hra), _checked_fingerprint(hra, manifest, model_dir)


def _checked_fingerprint(hra: HRAModel, manifest: dict, model_dir: Path) -> str:
    fp = fingerprint(hra)
    expected = manifest.get("fingerprint")
    if expected and fp != expected:
        raise ValueError(f"{model_dir}: fingerprint {fp} != manifest's {expected}")
    return fp


def write_seeded_controller(model_dir: Path, hidden_dim: int, controller_dim: int, seed: int):
    """The committed controller: torch's default init under `seed` (not trained)."""
    torch.manual_seed(seed)
    controller = Controller(hidden_dim, controller_dim)
    state = {k: v.detach().contiguous() for k, v in controller.state_dict().items()}
    save_file(state, str(Path(model_dir) / CONTROLLER_FILE), metadata={"seed": str(seed)})
