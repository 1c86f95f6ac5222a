"""torchaudio's wav2vec2 carries the same HRA controller and heads (random weights)."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from adapters_store.families import head_shapes
from adapters_store.head_batch import HeadBatch
from adapters_store.head_format import HeadType
from server.models.checkpoint import load_model, save_model
from server.models.hf.wav2vec2 import Wav2Vec2Backbone
from server.models.hra import HRAModel

# wav2vec2-base's architecture at a fraction of the width, so the test is fast;
# the same code path serves wav2vec2_base/large and hubert_* factories.
SMALL = {
    "extractor_mode": "group_norm",
    "extractor_conv_layer_config": [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2,
    "extractor_conv_bias": False,
    "encoder_embed_dim": 64,
    "encoder_projection_dropout": 0.0,
    "encoder_pos_conv_kernel": 16,
    "encoder_pos_conv_groups": 4,
    "encoder_num_layers": 2,
    "encoder_num_heads": 2,
    "encoder_attention_dropout": 0.0,
    "encoder_ff_interm_features": 128,
    "encoder_ff_interm_dropout": 0.0,
    "encoder_dropout": 0.0,
    "encoder_layer_norm_first": False,
    "encoder_layer_drop": 0.0,
}


def _model() -> HRAModel:
    torch.manual_seed(0)
    return HRAModel(Wav2Vec2Backbone("wav2vec2_model", **SMALL), controller_dim=8).eval()


def test_wav2vec2_backbone_runs_hra_heads_per_utterance():
    model = _model()
    wave = [torch.randn(8000), torch.randn(12000)]
    feats = [model.backbone.featurize(w) for w in wave]
    inputs = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    lengths = torch.tensor([8000, 12000])
    shapes = head_shapes(HeadType.LINEAR, 64, 8, 0, 2)
    head = (HeadType.LINEAR, {"V": torch.randn(shapes["V"]) * 0.1})
    with torch.no_grad():
        plain, out_lengths = model(inputs, lengths, None)
        adapted, _ = model(inputs, lengths, HeadBatch.from_heads([head, None]))
    assert plain.shape[-1] == 29 and out_lengths.tolist() == [24, 37]
    assert not torch.allclose(adapted[0], plain[0], atol=1e-4)  # headed utterance changes
    torch.testing.assert_close(adapted[1], plain[1])  # the other does not


def test_wav2vec2_weights_load_from_a_local_file_and_checkpoint_round_trips(tmp_path):
    source = Wav2Vec2Backbone("wav2vec2_model", **SMALL)
    weights = {k: v for k, v in source.model.state_dict().items() if not k.startswith("aux.")}
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp_path / "w.safetensors"))
    loaded = Wav2Vec2Backbone.from_file(tmp_path / "w.safetensors", "wav2vec2_model", **SMALL)
    for k, v in weights.items():
        torch.testing.assert_close(loaded.model.state_dict()[k], v)
    fp = save_model(HRAModel(loaded, 8), tmp_path / "hra.safetensors")
    _, loaded_fp = load_model(tmp_path / "hra.safetensors")
    assert loaded_fp == fp
