"""Tiny NeMo CTC models written by NeMo itself, and NeMo's own forward as the reference.

NeMo (nemo_toolkit[asr] 3.0.0) is not a dependency: installing it takes ~3 minutes and ~1 GB
on top of our venv, and importing it ~20-35 s, over the suite's budget. So:
  - with NeMo importable, tests/server/models/nemo/test_loader.py writes fresh models here and
    compares against NeMo's forward live;
  - always, the .nemo files and NeMo's log-probabilities that this script wrote (committed
    under tests/server/models/nemo/nemo_data/) are checked, without NeMo.
Regenerate them (in an environment with NeMo; FSDD under /work/shared/data or HRA_FSDD_ROOT):
    python -m tests.server.models.nemo.nemo_reference
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

DATA = Path(__file__).parent / "nemo_data"
LABELS = [" ", "'"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
# FSDD recordings the references are computed on (different lengths: a padded batch)
CLIPS = ("4_george_0.wav", "7_jackson_12.wav", "1_theo_3.wav")
MODELS = {  # name -> (subsampling, factor, conv norm, untie_biases)
    "conformer": ("striding", 4, "batch_norm", True),
    "fastconformer": ("dw_striding", 8, "layer_norm", False),
}


def config(subsampling: str, factor: int, norm: str, untie: bool) -> dict:
    return {
        "sample_rate": 16000,
        "labels": LABELS,
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": 16000,
            "normalize": "per_feature",
            "window_size": 0.025,
            "window_stride": 0.01,
            "window": "hann",
            "features": 80,
            "n_fft": 512,
            "log": True,
            "frame_splicing": 1,
            "dither": 1e-5,
            "pad_to": 16,
            "pad_value": 0.0,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": 80,
            "feat_out": -1,
            "n_layers": 2,
            "d_model": 32,
            "subsampling": subsampling,
            "subsampling_factor": factor,
            "subsampling_conv_channels": 16,
            "ff_expansion_factor": 4,
            "self_attention_model": "rel_pos",
            "n_heads": 2,
            "att_context_size": [-1, -1],
            "xscaling": True,
            "untie_biases": untie,
            "pos_emb_max_len": 5000,
            "conv_kernel_size": 9,
            "conv_norm_type": norm,
            "dropout": 0.1,
            "dropout_pre_encoder": 0.1,
            "dropout_emb": 0.0,
            "dropout_att": 0.1,
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.ConvASRDecoder",
            "feat_in": 32,
            "num_classes": len(LABELS),
            "vocabulary": LABELS,
        },
        "train_ds": None,
        "validation_ds": None,
        "test_ds": None,
        "optim": None,
    }


def write_tiny_nemo(path: Path, name: str, spell: bool = False):
    """NeMo's EncDecCTCModel from a config dict, random weights, saved with save_to.
    Positional biases and BatchNorm statistics are randomized too (NeMo inits them to
    0 / identity), so parity covers them. spell: letters outscore blank."""
    from nemo.collections.asr.models import EncDecCTCModel
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    model = EncDecCTCModel(cfg=OmegaConf.create(config(*MODELS[name])))
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "pos_bias" in param_name:
                param.normal_(0, 0.5)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0, 0.3)
                module.running_var.uniform_(0.5, 2.0)
        if spell:
            model.decoder.decoder_layers[0].bias[2:-1] += 3.0
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_to(str(path))
    return model


def nemo_log_probs(model, waves: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """NeMo's forward, each clip alone, and the clips as one padded batch."""
    with torch.no_grad():
        solo = []
        for w in waves:
            log_probs, length, _ = model.forward(
                input_signal=w[None], input_signal_length=torch.tensor([len(w)])
            )
            solo.append(log_probs[0, : int(length[0])])
        batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
        lengths = torch.tensor([len(w) for w in waves])
        batched, _, _ = model.forward(input_signal=batch, input_signal_length=lengths)
    return solo, batched


def main() -> None:
    import nemo
    from safetensors.torch import save_file

    from server.config import get_settings
    from server.data.manifest import load_audio

    root = get_settings().fsdd_root
    waves = [load_audio(root / c) for c in CLIPS]
    for name in MODELS:
        model = write_tiny_nemo(DATA / f"{name}.nemo", name)
        solo, batched = nemo_log_probs(model, waves)
        tensors = {f"solo/{i}": t.contiguous() for i, t in enumerate(solo)}
        tensors["batched"] = batched.contiguous()
        meta = {"clips": json.dumps(CLIPS), "nemo_version": nemo.__version__}
        save_file(tensors, str(DATA / f"{name}.reference.safetensors"), metadata=meta)
        print(f"wrote {DATA / name}.nemo and its reference (NeMo {nemo.__version__})")


if __name__ == "__main__":
    main()
