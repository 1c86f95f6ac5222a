"""The model kinds: what a model directory holds, and what each kind knows how to do.

A model directory says what it holds:
    model.safetensors                 an HRA CTC checkpoint (server/models/checkpoint.py):
                                      our Conformer, or an adapted wav2vec2 / Hugging Face /
                                      NeMo backbone embedded with its controller
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
upload's validation) works unchanged for any kind.

Each kind is one ModelKind object (KINDS, by manifest name); `model_kind_of(model_dir)`
gives a directory's. Serving, the CLI, evaluation and fine-tuning jobs ask it, instead of
comparing kind names:
    load_recognizer(settings, device)  the recognizer as served, and its fingerprint
Fine-tuning jobs key their trainers by these objects (server/jobs/model_kinds.py:
TRAINERS), so this layer imports nothing above it.
The languages a request may name are the loaded recognizer's (`Recognizer.languages`,
checked by server/serving/request.py check_language): a multilingual Whisper and an
English one are the same kind.
Kind-specific modules are imported when a kind is used, so a CTC server never imports
Whisper's.
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
from server.models.hra import HRAModel
from server.models.precision import apply_backbone_precision
from server.models.recognizer import Recognizer

logger = logging.getLogger(__name__)

CONTROLLER_FILE = "controller.safetensors"
MANIFEST_FILE = "manifest.json"


class ModelKind:
    """One kind of model directory. Subclasses say how to load and train theirs."""

    name: str  # the manifest's "kind"
    label: str  # how messages name it

    def load_recognizer(self, settings: Settings, device: torch.device) -> tuple[Recognizer, str]:
        """settings.model_dir's model on `device`, in eval mode, and its fingerprint."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"ModelKind({self.name!r})"


class HraCtcKind(ModelKind):
    """model.safetensors: backbone + controller in one checkpoint."""

    name = "hra_ctc"
    label = "HRA CTC"

    def load_recognizer(self, settings: Settings, device: torch.device) -> tuple[Recognizer, str]:
        from server.models.ctc.recognizer import CtcRecognizer

        model, fp = load_model(settings.model_dir / "model.safetensors", device)
        apply_backbone_precision(model, settings.backbone_precision, device)
        return CtcRecognizer(model), fp


class HfCtcKind(ModelKind):
    """A Hugging Face CTC folder + controller.safetensors."""

    name = "hf_ctc"
    label = "Hugging Face CTC"

    def load_recognizer(self, settings: Settings, device: torch.device) -> tuple[Recognizer, str]:
        from server.models.ctc.recognizer import CtcRecognizer
        from server.models.hf.ctc import HfCtcBackbone

        model_dir = settings.model_dir
        manifest = read_manifest(model_dir)
        backbone = HfCtcBackbone.from_folder(model_dir / str(manifest["checkpoint"]))
        hra = _with_controller(backbone, manifest, model_dir)
        hra.to(device).eval()
        fp = _checked_fingerprint(hra, manifest, model_dir)
        recognizer = CtcRecognizer(hra)
        apply_backbone_precision(recognizer.model, settings.backbone_precision, device)
        return recognizer, fp


class WhisperKind(ModelKind):
    """Pinned Whisper weights + controller.safetensors over the encoder."""

    name = "whisper"
    label = "Whisper"

    def load_recognizer(self, settings: Settings, device: torch.device) -> tuple[Recognizer, str]:
        from server.models.whisper.model import load_whisper_from_settings
        from server.models.whisper.recognizer import WhisperRecognizer, decode_limits

        model_dir = settings.model_dir
        manifest = read_manifest(model_dir)
        whisper = load_whisper_from_settings(settings, model_dir)
        hra = _with_controller(whisper.encoder, manifest, model_dir)
        whisper.to(device).eval()
        hra.to(device).eval()
        fp = _checked_fingerprint(hra, manifest, model_dir)
        recognizer = WhisperRecognizer(
            whisper,
            hra,
            settings.whisper.max_tokens,
            fallback=settings.whisper.temperature_fallback,
            limits=decode_limits(settings.whisper),
        )
        return recognizer, fp


HRA_CTC = HraCtcKind()
HF_CTC = HfCtcKind()
WHISPER = WhisperKind()
KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (HRA_CTC, HF_CTC, WHISPER)}


def model_kind_of(model_dir: Path) -> ModelKind:
    """The kind a model directory holds: its manifest's "kind", else (no manifest) hra_ctc."""
    manifest = Path(model_dir) / MANIFEST_FILE
    name = HRA_CTC.name
    if manifest.is_file():
        name = str(json.loads(manifest.read_text()).get("kind", HRA_CTC.name))
    if name not in KINDS:
        raise ValueError(f"{manifest}: unknown model kind {name!r}")
    return KINDS[name]


def load_recognizer(settings: Settings, device: torch.device) -> tuple[Recognizer, str]:
    """settings.model_dir's model on `device`, in eval mode, and its fingerprint."""
    return model_kind_of(settings.model_dir).load_recognizer(settings, device)


def read_manifest(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / MANIFEST_FILE).read_text())


def _with_controller(backbone: torch.nn.Module, manifest: dict, model_dir: Path) -> HRAModel:
    hra = HRAModel(backbone, int(manifest["controller_dim"]))
    hra.controller.load_state_dict(load_file(str(model_dir / CONTROLLER_FILE)))
    return hra


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
