"""A Hugging Face CTC folder, written by transformers itself, loads and reproduces its logits.

transformers is a dev dependency only: it writes tiny random models here and runs their
forward as the reference; the loader under test never imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from adapters_store.families import head_shapes
from adapters_store.head_batch import HeadBatch
from adapters_store.head_format import HeadType
from server.config import Settings
from server.data.manifest import load_audio
from server.models.checkpoint import load_model, save_model
from server.models.ctc.features import pad_features
from server.models.ctc.inference import decode_one
from server.models.hf.checkpoint import HfCheckpointError
from server.models.hf.ctc import HfCtcBackbone
from server.models.hra import HRAModel
from server.models.registry import load_recognizer, write_seeded_controller
from tests.helpers import running_client

transformers = pytest.importorskip("transformers")

# wav2vec2-base's structure (7-block conv front end, 320-sample stride) at tiny width.
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)
LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "'": 5} | {
    c: 6 + i for i, c in enumerate(LETTERS)
}


def _write_folder(
    folder: Path, arch: str, form: str, spell: bool = False, **overrides
) -> torch.nn.Module:
    """save_pretrained a random tiny model + its tokenizer and feature extractor.
    spell: letters outscore the blank, so even random weights transcribe something."""
    torch.manual_seed(0)
    kwargs = TINY | {"vocab_size": len(VOCAB), "pad_token_id": 0} | overrides
    if arch == "wav2vec2":
        model = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**kwargs))
    elif arch == "data2vec":
        model = transformers.Data2VecAudioForCTC(transformers.Data2VecAudioConfig(**kwargs))
    elif arch == "wavlm":
        model = transformers.WavLMForCTC(transformers.WavLMConfig(**kwargs))
    else:
        model = transformers.HubertForCTC(transformers.HubertConfig(**kwargs))
    model.eval()
    if spell:
        with torch.no_grad():
            model.lm_head.bias[VOCAB["A"] :] += 3.0
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if form == "bin":  # the older format: a pickled state dict beside config.json
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    (folder / "v.json").write_text(json.dumps(VOCAB))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(folder / "v.json"))
    tokenizer.save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return model


def _hf_logits(hf_model, waveform: np.ndarray) -> torch.Tensor:
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    inputs = extractor(waveform, sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        return hf_model(inputs).logits[0]


@pytest.mark.parametrize("arch", ["wav2vec2", "hubert", "wavlm", "data2vec"])
@pytest.mark.parametrize("form", ["safetensors", "bin"])
def test_loaded_checkpoint_reproduces_the_hf_forward_on_real_audio(tmp_path, fsdd_test, arch, form):
    hf_model = _write_folder(tmp_path / "ckpt", arch, form)
    backbone = HfCtcBackbone.from_folder(tmp_path / "ckpt")
    model = HRAModel(backbone, controller_dim=8).eval()
    wave = load_audio(fsdd_test[0].audio)
    expected = _hf_logits(hf_model, wave.numpy())
    feats = backbone.featurize(wave)
    with torch.no_grad():
        x, lengths = backbone.embed(feats[None], torch.tensor([feats.shape[0]]))
        mask = torch.zeros(1, x.shape[1], dtype=torch.bool)
        for i in range(backbone.num_layers):
            x = backbone.layer(i, x, mask)
        ours = backbone.hf_logits(x)[0]
        served, _ = model(feats[None], torch.tensor([feats.shape[0]]), None)
    assert ours.shape == expected.shape and int(lengths[0]) == expected.shape[0]
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
    # The served output is the same distribution folded onto our characters.
    folded = expected.softmax(-1) @ backbone.fold
    torch.testing.assert_close(served[0].exp(), folded, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["wav2vec2", "wavlm", "data2vec"])
def test_padded_batch_reproduces_each_utterances_hf_forward(tmp_path, fsdd_test, arch):
    hf_model = _write_folder(
        tmp_path / "ckpt", arch, "safetensors", feat_extract_norm="layer", do_stable_layer_norm=True
    )
    model = HRAModel(HfCtcBackbone.from_folder(tmp_path / "ckpt"), controller_dim=8).eval()
    waves = [load_audio(c.audio) for c in fsdd_test[:3]]
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    batch = extractor(
        [w.numpy() for w in waves], sampling_rate=16000, padding=True, return_tensors="pt"
    )
    inputs, lengths = pad_features([model.backbone.featurize(w) for w in waves])
    with torch.no_grad():
        batched = hf_model(batch.input_values, attention_mask=batch.attention_mask).logits
        solo = [_hf_logits(hf_model, w.numpy()) for w in waves]
        x, out_lengths = model.backbone.embed(inputs, lengths)
        mask = torch.arange(x.shape[1])[None, :] >= out_lengths[:, None]
        for i in range(model.backbone.num_layers):
            x = model.backbone.layer(i, x, mask)
        ours = model.backbone.hf_logits(x)
    assert len(set(out_lengths.tolist())) == 3
    for b, n in enumerate(out_lengths.tolist()):
        torch.testing.assert_close(ours[b, :n], solo[b], atol=1e-4, rtol=0)
        if arch != "data2vec":  # HF's batched data2vec leaks padding into the last frames
            torch.testing.assert_close(ours[b, :n], batched[b, :n], atol=1e-4, rtol=0)


def test_folded_output_decodes_as_the_hf_tokenizer_spells(tmp_path):
    _write_folder(tmp_path / "ckpt", "wav2vec2", "safetensors")
    backbone = HfCtcBackbone.from_folder(tmp_path / "ckpt")
    tokenizer = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "ckpt")
    path = [VOCAB[t] for t in "H H <pad> I | | <pad> Y O U".split()]  # frames' best tokens
    hf_logits = torch.full((len(path), len(VOCAB)), -5.0)
    hf_logits[torch.arange(len(path)), path] = 5.0
    folded = hf_logits.log_softmax(-1).exp() @ backbone.fold
    ours = decode_one(folded.log(), (), 0.02).text
    assert ours == tokenizer.decode(path).lower() == "hi you"


@pytest.mark.parametrize("arch", ["wav2vec2", "wavlm", "data2vec"])
def test_hra_heads_on_the_loaded_backbone_zero_is_noop_and_mixed_equals_solo(
    tmp_path, fsdd_test, arch
):
    # layer-norm front end: padding does not leak into other frames (group norm would)
    _write_folder(
        tmp_path / "ckpt",
        arch,
        "safetensors",
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
    )
    model = HRAModel(HfCtcBackbone.from_folder(tmp_path / "ckpt"), controller_dim=8).eval()
    clips = fsdd_test[:3]
    feats = [model.backbone.featurize(load_audio(c.audio)) for c in clips]
    assert len({f.shape[0] for f in feats}) == 3
    d, c, n = model.backbone.hidden_dim, model.controller.dim, model.backbone.num_layers
    g = torch.Generator().manual_seed(1)
    residual = head_shapes(HeadType.RESIDUAL, d, c, 4, n)
    heads = [
        (
            HeadType.LINEAR,
            {"V": torch.randn(head_shapes(HeadType.LINEAR, d, c, 0, n)["V"], generator=g) * 0.1},
        ),
        (HeadType.RESIDUAL, {k: torch.randn(s, generator=g) * 0.1 for k, s in residual.items()}),
        None,
    ]
    zero = (HeadType.LINEAR, {"V": torch.zeros(head_shapes(HeadType.LINEAR, d, c, 0, n)["V"])})
    inputs, lengths = pad_features(feats)
    with torch.no_grad():
        mixed, out_lengths = model(inputs, lengths, HeadBatch.from_heads(heads))
        plain, _ = model(inputs, lengths, None)
        zeroed, _ = model(inputs, lengths, HeadBatch.from_heads([zero] * 3))
        for b, (f, head) in enumerate(zip(feats, heads)):
            solo, _ = model(f[None], torch.tensor([f.shape[0]]), HeadBatch.from_heads([head]))
            torch.testing.assert_close(
                mixed[b, : int(out_lengths[b])], solo[0], atol=1e-4, rtol=1e-4
            )
    torch.testing.assert_close(zeroed, plain)
    assert not torch.allclose(
        mixed[0, : int(out_lengths[0])], plain[0, : int(out_lengths[0])], atol=1e-3
    )


def test_hra_checkpoint_of_the_loaded_backbone_round_trips_with_its_fingerprint(tmp_path):
    _write_folder(tmp_path / "ckpt", "hubert", "safetensors")
    model = HRAModel(HfCtcBackbone.from_folder(tmp_path / "ckpt"), controller_dim=8)
    fp = save_model(model, tmp_path / "model.safetensors")
    loaded, loaded_fp = load_model(tmp_path / "model.safetensors")
    assert loaded_fp == fp and isinstance(loaded.backbone, HfCtcBackbone)


# --- hostile folders: a clear HfCheckpointError, never code execution ---


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(_Boom.marker),))


def test_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path):
    folder = tmp_path / "ckpt"
    _write_folder(folder, "wav2vec2", "bin")
    _Boom.marker = str(tmp_path / "pwned")
    torch.save({"lm_head.weight": _Boom()}, folder / "pytorch_model.bin")  # torch's own format
    with pytest.raises(HfCheckpointError, match="weights_only.*UnpicklingError"):
        HfCtcBackbone.from_folder(folder)
    assert not (tmp_path / "pwned").exists()
    torch.load(folder / "pytorch_model.bin", weights_only=False)  # what an unsafe loader does
    assert (tmp_path / "pwned").exists()  # so the file really was hostile


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: (f / "config.json").unlink(), "config.json: missing"),
        (lambda f: (f / "vocab.json").unlink(), "vocab.json: missing"),
        (lambda f: (f / "preprocessor_config.json").unlink(), "preprocessor_config.json: missing"),
        (lambda f: (f / "model.safetensors").unlink(), "neither model.safetensors"),
        (lambda f: (f / "model.safetensors").write_bytes(b"\xff" * 64), "unreadable"),
        (lambda f: (f / "config.json").write_text("{nope"), "not JSON"),
    ],
)
def test_missing_or_corrupt_files_are_named(tmp_path, edit, message):
    folder = tmp_path / "ckpt"
    _write_folder(folder, "wav2vec2", "safetensors")
    edit(folder)
    with pytest.raises(HfCheckpointError, match=message):
        HfCtcBackbone.from_folder(folder)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("hidden_size", 10**9, "hidden_size"),
        ("num_hidden_layers", 100_000, "num_hidden_layers"),
        ("num_attention_heads", 3, "divisible"),
        ("conv_kernel", [10] * 100, "conv_kernel"),
        ("vocab_size", -1, "vocab_size"),
        ("intermediate_size", "big", "intermediate_size"),
        ("architectures", ["Wav2Vec2ConformerForCTC"], "not supported yet"),
        ("architectures", ["BertForMaskedLM"], "supported"),
        ("hidden_act", "relu", "gelu"),
    ],
)
def test_absurd_config_values_are_refused_before_anything_is_allocated(
    tmp_path, field, value, message
):
    folder = tmp_path / "ckpt"
    _write_folder(folder, "wav2vec2", "safetensors")
    cfg = json.loads((folder / "config.json").read_text())
    cfg[field] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(HfCheckpointError, match=message):
        HfCtcBackbone.from_folder(folder)


@pytest.mark.parametrize(
    "changes, message",
    [
        # in bounds field by field, but ~6 G parameters: building it first would need 24 GB
        ({"hidden_size": 4096, "num_hidden_layers": 90, "intermediate_size": 4096}, "parameters"),
        ({"conv_kernel": [1000] * 7, "conv_stride": [50] * 7}, "samples per frame"),
    ],
)
def test_config_bigger_than_its_weights_is_refused_before_building(tmp_path, changes, message):
    folder = tmp_path / "ckpt"
    _write_folder(folder, "wav2vec2", "safetensors")
    cfg = json.loads((folder / "config.json").read_text()) | changes
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(HfCheckpointError, match=message):
        HfCtcBackbone.from_folder(folder)


def test_weights_of_the_wrong_shape_are_refused_by_name(tmp_path):
    folder = tmp_path / "ckpt"
    _write_folder(folder, "wav2vec2", "safetensors")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["intermediate_size"] = 40  # the saved tensors are 37 wide
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(HfCheckpointError, match="wrong shape.*intermediate_dense"):
        HfCtcBackbone.from_folder(folder)


def test_vocab_and_sample_rate_we_cannot_serve_are_refused(tmp_path):
    folder = tmp_path / "ckpt"
    _write_folder(folder, "wav2vec2", "safetensors")
    (folder / "vocab.json").write_text(json.dumps({"<pad>": 0, "ä": 1, "ö": 2}))
    with pytest.raises(HfCheckpointError, match="a-z"):
        HfCtcBackbone.from_folder(folder)
    (folder / "vocab.json").write_text(json.dumps({"<pad>": 0, "a": 99}))
    with pytest.raises(HfCheckpointError, match="vocab_size"):
        HfCtcBackbone.from_folder(folder)
    (folder / "vocab.json").write_text(json.dumps(VOCAB))
    pre = json.loads((folder / "preprocessor_config.json").read_text()) | {"sampling_rate": 8000}
    (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    with pytest.raises(HfCheckpointError, match="16000"):
        HfCtcBackbone.from_folder(folder)


# --- a model directory names the folder; the server loads and serves it over HTTP ---


def _hf_model_dir(tmp_path: Path) -> Path:
    model_dir = tmp_path / "models" / "mine"
    _write_folder(model_dir / "hf", "wav2vec2", "safetensors", spell=True)
    write_seeded_controller(model_dir, TINY["hidden_size"], 8, seed=0)
    manifest = {"kind": "hf_ctc", "checkpoint": "hf", "controller_dim": 8}
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    return model_dir


def test_model_dir_manifest_kind_hf_ctc_loads_the_folder_with_a_checked_fingerprint(tmp_path):
    model_dir = _hf_model_dir(tmp_path)
    recognizer, fp = load_recognizer(Settings(model_dir=model_dir), torch.device("cpu"))
    assert isinstance(recognizer.model.backbone, HfCtcBackbone)
    assert recognizer.frame_seconds == 0.02 and recognizer.min_samples == 400
    manifest = json.loads((model_dir / "manifest.json").read_text()) | {"fingerprint": "0" * 16}
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="fingerprint"):
        load_recognizer(Settings(model_dir=model_dir), torch.device("cpu"))


async def test_hf_backbone_serves_over_http_as_its_solo_forward_decodes(tmp_path, fsdd_test):
    model_dir = _hf_model_dir(tmp_path)
    settings = Settings(model_dir=model_dir, disk_store_path=tmp_path / "heads", open_access=True)
    recognizer, _ = load_recognizer(settings, torch.device("cpu"))
    clip = fsdd_test[0]
    feats = recognizer.model.backbone.featurize(load_audio(clip.audio))
    with torch.no_grad():
        logits, _ = recognizer.model(feats[None], torch.tensor([feats.shape[0]]), None)
    expected = decode_one(logits[0], (), 0.02).text
    async with running_client(settings) as client:
        r = await client.post(
            "/v1/transcribe?task_id=base",
            content=Path(clip.audio).read_bytes(),
            headers={"content-type": "audio/wav"},
        )
    assert r.status_code == 200, r.text
    assert expected and r.json()["text"] == expected  # random weights still spell something
