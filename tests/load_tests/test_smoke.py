"""Every benchmark and load script runs in a short mode, so none of them rots.

These check that each script completes and writes well-formed results; the
numbers themselves are measured by the full runs (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from load_tests.bench_fused import VARIANTS
from server.config import REPO_ROOT

pytestmark = pytest.mark.slow


def _run(module: str, *args: str, timeout: int = 300) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_fused_benchmark_smoke_writes_every_variant(tmp_path):
    out = tmp_path / "fused.json"
    _run("load_tests.bench_fused", "--smoke", "--out", str(out))
    result = json.loads(out.read_text())
    records = result["rows"]
    assert {r["variant"] for r in records} == set(VARIANTS)
    assert all(r["audio_s_per_s"] > 0 and r["ratio_median"] > 0 for r in records)
    assert all(r["ratio_min"] <= r["ratio_median"] <= r["ratio_max"] for r in records)
    assert result["config"]["threads"] == 2
    assert [h["backbone"] for h in result["heads"]] == ["default"]
    assert result["heads"][0]["head_bytes"] == 144 * 32 * 4


def test_length_bucket_benchmark_smoke_compares_one_pass_buckets_one_by_one_and_sizes(tmp_path):
    out, bound = tmp_path / "buckets.json", tmp_path / "bound.json"
    _run(
        "load_tests.bench_buckets",
        *("--batch", "8", "--sizes", "4", "--repeats", "1"),
        *("--out", str(out), "--bound-out", str(bound)),
    )
    rows = {r["variant"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"one_pass", "buckets", "one_by_one"}
    assert rows["one_pass"]["forward_passes"] == 1 and rows["one_by_one"]["forward_passes"] == 8
    assert all(r["audio_s_per_s"] > 0 for r in rows.values())
    sizes = json.loads(bound.read_text())
    assert [(r["batch"], r["clips"]) for r in sizes] == [(1, 8), (4, 8)]
    assert sizes[0]["speed_vs_batch_1"] == 1.0 and sizes[1]["ms_per_clip"] > 0


def test_vocabulary_decoding_benchmark_smoke(tmp_path):
    out = tmp_path / "vocabulary.json"
    _run(
        "load_tests.bench_vocabulary",
        *("--sizes", "10", "50", "--lengths", "fsdd", "--repeats", "1", "--out", str(out)),
    )
    rows = json.loads(out.read_text())
    assert [r["vocabulary_words"] for r in rows] == [10, 50]
    assert all(r["median_ms"] > 0 and r["states"] > r["vocabulary_words"] for r in rows)


def test_head_load_benchmark_smoke(tmp_path, redis_server):
    out = tmp_path / "head-load.json"
    _run(
        "load_tests.bench_head_load",
        "--count",
        "20",
        "--redis-url",
        redis_server.url,
        "--out",
        str(out),
    )
    tiers = {row["tier"] for row in json.loads(out.read_text())}
    assert tiers == {"cold_disk", "cold_redis", "host_to_device (cpu pool)", "cache_hit"}


def test_locust_load_scenario_smoke(tmp_path):
    out = tmp_path / "load.json"
    _run(
        "load_tests.run_load",
        "hot-swap",
        "--tasks",
        "13",
        "--users",
        "4",
        "--duration",
        "4",
        "--out",
        str(out),
    )
    (run,) = json.loads(out.read_text())
    assert run["requests"] > 0 and run["failures"] == 0


def test_memory_and_soak_scripts_smoke(tmp_path):
    memory = tmp_path / "memory.json"
    _run(
        "load_tests.memory_many_heads",
        "--heads",
        "40",
        "--distinct",
        "40",
        "--requests",
        "64",
        "--host-heads",
        "8",
        "--device-slots",
        "4",
        "--out",
        str(memory),
    )
    result = json.loads(memory.read_text())
    assert result["host_cache_heads"] <= 8 and result["device_slots_resident"] <= 4
    assert result["errors"] == 0
    soak = tmp_path / "soak.json"
    _run(
        "load_tests.soak",
        "--minutes",
        "0.1",
        "--users",
        "2",
        "--swap-every",
        "1",
        "--out",
        str(soak),
    )
    soak_result = json.loads(soak.read_text())
    assert soak_result["errors"] == 0
    assert soak_result["allocator"] == "jemalloc"  # `hra serve` re-executed on jemalloc


def test_isolation_benchmark_smoke_serves_every_good_request_beside_a_hostile_one(tmp_path):
    out = tmp_path / "isolation.json"
    _run(
        "load_tests.bench_isolation",
        *("--burst", "4", "--repeats", "1", "--out", str(out)),
        *("--kinds", "too_short", "huge_vocabulary_60s"),
    )
    rows = {r["hostile"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"too_short", "huge_vocabulary_60s"}
    assert all(r["good_ok"] == "4/4" for r in rows.values())
    assert rows["too_short"]["hostile_answer"] == "400 audio_too_short"
    assert rows["huge_vocabulary_60s"]["hostile_answer"] == "413 vocabulary_too_costly"


def test_adapt_cost_benchmark_smoke_measures_cached_and_uncached_steps(tmp_path):
    out = tmp_path / "adapt.json"
    _run("load_tests.bench_adapt", "--smoke", "--out", str(out))
    (row,) = json.loads(out.read_text())
    assert row["backbone"] == "tiny" and row["controller_dim"] == 16
    assert row["step_cached_s"] > 0 and row["step_uncached_s"] > 0
    assert row["embed_s_per_audio_s"] > 0 and row["cache_mb_per_audio_h"] > 0


def test_whisper_benchmark_smoke_compares_fused_heads_base_and_ctranslate2(tmp_path):
    out = tmp_path / "whisper.json"
    _run(
        "load_tests.bench_whisper",
        *("--smoke", "--batch", "1", "--variants", "fused_mixed", "ctranslate2"),
        *("--out", str(out)),
    )
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"base_only", "fused_mixed", "ctranslate2"}
    assert all(r["audio_s_per_s"] > 0 and r["tokens_decoded"] > 0 for r in rows.values())
    assert rows["fused_mixed"]["ratio_to_ct2_median"] > 0  # the anchor ratio is reported


def test_cpu_speedup_benchmark_smoke_times_every_backbone_precision(tmp_path):
    out = tmp_path / "cpu.json"
    _run("load_tests.bench_cpu_speedups", "--skip-wer", "--max-repeats", "1", "--out", str(out))
    speed = json.loads(out.read_text())["speed"]
    assert set(speed["32"]) == {"fp32", "int8", "bf16"}
    assert speed["32"]["fp32"]["max_abs_logit_diff"] == 0.0
    assert 0 < speed["32"]["int8"]["max_abs_logit_diff"] < 2.0
