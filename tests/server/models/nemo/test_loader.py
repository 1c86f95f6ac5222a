"""A NeMo .nemo Conformer-CTC / FastConformer-CTC, written by NeMo itself, loads without NeMo
and reproduces NeMo's own log-probabilities (1e-4), alone and in a padded batch.

The committed models and references were written by NeMo 3.0.0 (tests/server/models/
nemo_reference.py says why NeMo is not installed in CI and how to regenerate them); where NeMo
is importable, the live test writes fresh models and runs NeMo's forward in the test.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from server.data.manifest import load_audio
from server.models.checkpoint import load_model, save_model
from server.models.ctc.features import pad_features
from server.models.hra import HRAModel
from server.models.nemo.checkpoint import NemoCheckpointError
from server.models.nemo.ctc import NemoCtcBackbone
from tests.server.models.nemo.nemo_reference import CLIPS, DATA, MODELS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _nemo_forward(backbone: NemoCtcBackbone, waves: list[torch.Tensor]):
    """Our log-probabilities in NeMo's vocabulary: each clip alone, and as one padded batch."""
    feats = [backbone.featurize(w) for w in waves]
    with torch.no_grad():
        solo = []
        for f in feats:
            x, _ = backbone.embed(f[None], torch.tensor([f.shape[0]]))
            mask = torch.zeros(1, x.shape[1], dtype=torch.bool)
            for i in range(backbone.num_layers):
                x = backbone.layer(i, x, mask)
            solo.append(backbone.nemo_log_probs(x)[0])
        inputs, lengths = pad_features(feats)
        x, lengths = backbone.embed(inputs, lengths)
        mask = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
        for i in range(backbone.num_layers):
            x = backbone.layer(i, x, mask)
        batched = backbone.nemo_log_probs(x)
    return solo, batched, lengths


@pytest.mark.parametrize("name", list(MODELS))
def test_nemo_written_archive_reproduces_nemos_log_probs_alone_and_batched(name, fsdd_root):
    backbone = NemoCtcBackbone.from_file(DATA / f"{name}.nemo")
    path = DATA / f"{name}.reference.safetensors"
    reference = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        assert tuple(json.loads(f.metadata()["clips"])) == CLIPS
    waves = [load_audio(fsdd_root / c) for c in CLIPS]
    solo, batched, lengths = _nemo_forward(backbone, waves)
    assert len(set(lengths.tolist())) > 1 or name == "fastconformer"  # 8x: lengths may tie
    for i, ours in enumerate(solo):
        expected = reference[f"solo/{i}"]
        assert ours.shape == expected.shape
        # against NeMo's log-probs, written on another machine: the conv and matmul
        # kernels' summation order follows the CPU (seen: 1e-6 where they were written,
        # 4.7e-4 on a later Xeon), so 2e-3 (log-prob units; no greedy path changes at that)
        torch.testing.assert_close(ours, expected, atol=2e-3, rtol=0)
        n = int(lengths[i])
        torch.testing.assert_close(batched[i, :n], reference["batched"][i, :n], atol=2e-3, rtol=0)
        # ours against ours, same machine: batching must not move a row
        torch.testing.assert_close(batched[i, :n], ours, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_fresh_model_written_by_nemo_in_the_test_matches_nemos_live_forward(
    name, tmp_path, fsdd_root
):
    pytest.importorskip("nemo.collections.asr")  # not in CI: see nemo_reference.py
    from tests.server.models.nemo.nemo_reference import nemo_log_probs, write_tiny_nemo

    model = write_tiny_nemo(tmp_path / "m.nemo", name)
    waves = [load_audio(fsdd_root / c) for c in CLIPS]
    expected_solo, expected_batched = nemo_log_probs(model, waves)
    solo, batched, lengths = _nemo_forward(NemoCtcBackbone.from_file(tmp_path / "m.nemo"), waves)
    for i, (ours, expected) in enumerate(zip(solo, expected_solo)):
        torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
        n = int(lengths[i])
        torch.testing.assert_close(batched[i, :n], expected_batched[i, :n], atol=1e-4, rtol=0)


def test_folded_output_is_nemos_distribution_on_our_characters(fsdd_root):
    backbone = NemoCtcBackbone.from_file(DATA / "conformer.nemo")
    wave = load_audio(fsdd_root / CLIPS[0])
    feats = backbone.featurize(wave)
    model = HRAModel(backbone, controller_dim=8).eval()
    with torch.no_grad():
        served, _ = model(feats[None], torch.tensor([feats.shape[0]]), None)
    nemo = load_file(str(DATA / "conformer.reference.safetensors"))["solo/0"]
    # NeMo: labels " ", "'", a..z then blank; ours: blank, " ", "'", a..z
    expected = torch.cat([nemo[:, -1:], nemo[:, :-1]], dim=1).exp()
    torch.testing.assert_close(served[0].exp(), expected, atol=1e-5, rtol=0)
    assert backbone.frame_seconds == 0.04 and backbone.min_samples == 320


def test_hra_checkpoint_of_a_nemo_backbone_round_trips_with_its_fingerprint(tmp_path):
    model = HRAModel(NemoCtcBackbone.from_file(DATA / "fastconformer.nemo"), controller_dim=8)
    fp = save_model(model, tmp_path / "model.safetensors")
    loaded, loaded_fp = load_model(tmp_path / "model.safetensors")
    assert loaded_fp == fp and isinstance(loaded.backbone, NemoCtcBackbone)
    assert loaded.backbone.frame_seconds == 0.08


# --- hostile archives: a clear NemoCheckpointError, never code execution or extraction ---


def _members(name: str = "conformer") -> dict[str, bytes]:
    with tarfile.open(DATA / f"{name}.nemo") as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar if m.isfile()}


def _write_tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _with_config(tmp_path: Path, **changes) -> Path:
    members = _members()
    cfg = yaml.safe_load(members["model_config.yaml"])
    for dotted, value in changes.items():
        section, _, key = dotted.rpartition("__")
        (cfg[section] if section else cfg)[key] = value
    members["model_config.yaml"] = yaml.safe_dump(cfg).encode()
    return _write_tar(tmp_path / "m.nemo", members)


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(_Boom.marker),))


def test_a_weights_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path):
    _Boom.marker = str(tmp_path / "pwned")
    evil = io.BytesIO()
    torch.save({"decoder.decoder_layers.0.bias": _Boom()}, evil)
    members = _members() | {"model_weights.ckpt": evil.getvalue()}
    with pytest.raises(NemoCheckpointError, match="weights_only.*UnpicklingError"):
        NemoCtcBackbone.from_file(_write_tar(tmp_path / "m.nemo", members))
    assert not (tmp_path / "pwned").exists()
    torch.load(io.BytesIO(evil.getvalue()), weights_only=False)  # what an unsafe loader does
    assert (tmp_path / "pwned").exists()  # so the file really was hostile


def test_member_names_that_climb_out_are_never_extracted(tmp_path):
    members = {"../../escaped.txt": b"x", "/abs.txt": b"y"} | _members()
    backbone = NemoCtcBackbone.from_file(_write_tar(tmp_path / "sub" / "m.nemo", members))
    assert backbone.num_layers == 2
    assert not (tmp_path / "escaped.txt").exists() and not Path("/abs.txt").exists()


def test_a_gzipped_archive_loads_like_the_plain_one(tmp_path):
    plain = NemoCtcBackbone.from_file(DATA / "conformer.nemo")
    gz = NemoCtcBackbone.from_file(_write_tar(tmp_path / "m.nemo", _members(), "w:gz"))
    for (k, a), b in zip(plain.state_dict().items(), gz.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize(
    "members, message",
    [
        (lambda m: {"model_config.yaml": m["model_config.yaml"]}, "no \\['model_weights.ckpt'\\]"),
        (lambda m: m | {"model_config.yaml": b"a: [unclosed"}, "not YAML"),
        (lambda m: m | {"model_config.yaml": b"!!python/object:os.system {}"}, "not YAML"),
        (lambda m: m | {"model_weights.ckpt": b"\x00" * 64}, "weights_only"),
    ],
)
def test_missing_or_corrupt_members_are_named(tmp_path, members, message):
    path = _write_tar(tmp_path / "m.nemo", members(_members()))
    with pytest.raises(NemoCheckpointError, match=message):
        NemoCtcBackbone.from_file(path)


def test_a_file_that_is_not_a_tar_is_refused(tmp_path):
    (tmp_path / "m.nemo").write_bytes(b"\x89PNG" + b"\x00" * 600)
    with pytest.raises(NemoCheckpointError, match="not a readable .nemo tar"):
        NemoCtcBackbone.from_file(tmp_path / "m.nemo")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"encoder__d_model": 10**9}, "d_model"),
        ({"encoder__n_layers": 100_000}, "n_layers"),
        ({"encoder__n_heads": 3}, "divisible"),
        ({"encoder__self_attention_model": "abs_pos"}, "self_attention_model"),
        ({"encoder__att_context_size": [70, 0]}, "full context"),
        ({"encoder__subsampling": "vggnet"}, "subsampling"),
        ({"encoder__subsampling_factor": 6}, "power of 2"),
        ({"preprocessor__sample_rate": 8000}, "16000"),
        ({"preprocessor__normalize": "all_features"}, "normalize"),
        ({"tokenizer": {"dir": "tok", "type": "bpe"}}, "sub-word tokenizer"),
        ({"decoder__num_classes": 5}, "num_classes"),
        # each field in bounds, together ~2 G parameters: refused before building anything
        ({"encoder__d_model": 4096, "encoder__n_layers": 24}, "parameters"),
    ],
)
def test_unsupported_or_absurd_config_is_refused_before_anything_is_allocated(
    tmp_path, changes, message
):
    with pytest.raises(NemoCheckpointError, match=message):
        NemoCtcBackbone.from_file(_with_config(tmp_path, **changes))


def test_weights_of_the_wrong_shape_are_refused_by_name(tmp_path):
    path = _with_config(tmp_path, encoder__ff_expansion_factor=2)  # saved tensors are 4x
    with pytest.raises(NemoCheckpointError, match="wrong shape.*feed_forward"):
        NemoCtcBackbone.from_file(path)
