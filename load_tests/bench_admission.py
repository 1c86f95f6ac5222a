"""What the per-request cost bounds cost, and what they bound (issue 12 item 2).

Each case runs in a fresh subprocess (one torch thread) so that its peak RSS is its own:
- resample 60 s of noise from 44.1 kHz, 44,101 Hz and 383,987 Hz with our polyphase
  resampler, and (with --old) with torchaudio.transforms.Resample as main did, under an
  address-space cap (--old-cap-gib) so a prime rate fails instead of swapping the machine;
- decode the largest file the default limits accept (8 channels x 15 s x 48 kHz FLAC);
- the admission checks: a header-only refusal (255-channel OGG) and check_vocabulary_cost.

    .venv/bin/python -m load_tests.bench_admission --old     # ~1 min (+30 s for --old)
Writes load_tests/results/admission.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from load_tests.report import write_table
from server.config import REPO_ROOT

CASE = r"""
import io, json, resource, sys, time
cap = int(sys.argv[3])
if cap:
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
import numpy as np, soundfile as sf, torch
torch.set_num_threads(1)
kind, arg = sys.argv[1], sys.argv[2]

def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def timed(fn, repeats=3):
    best, result = float("inf"), None
    for _ in range(repeats):
        began = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # the old resampler running out of memory
            return time.perf_counter() - began, f"{type(exc).__name__}: {str(exc)[:80]}"
        best = min(best, time.perf_counter() - began)
    return best, result

row = {"case": kind, "input": arg}
if kind in ("resample", "resample_old"):
    rate = int(arg)
    x = torch.randn(60 * rate) * 0.1
    before = rss_mib()
    if kind == "resample":
        from server.audio.resample import resample, resample_plan
        seconds, out = timed(lambda: resample(x, rate))
        plan = resample_plan(rate)
        row["filter"] = f"{plan.up}/{plan.down} x {plan.taps} taps, {plan.nbytes} B"
    else:
        import torchaudio
        seconds, out = timed(lambda: torchaudio.transforms.Resample(rate, 16_000)(x), 1)
    row["result"] = f"{out.shape[0]} samples" if isinstance(out, torch.Tensor) else out
elif kind == "decode":
    from server.audio.reading import read_audio
    from server.config import AudioSettings
    frames = 15 * 48_000
    tone = (0.3 * np.sin(np.arange(frames) / 48_000 * 2 * np.pi * 300)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.repeat(tone[:, None], 8, axis=1), 48_000, format="FLAC")
    data = buf.getvalue()
    before = rss_mib()
    seconds, out = timed(lambda: read_audio(data, AudioSettings()))
    import tracemalloc
    tracemalloc.start()
    read_audio(data, AudioSettings())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    row["result"] = (f"{len(data)} B FLAC -> {out.samples.shape[0]} mono samples, "
                     f"numpy peak {peak / 2**20:.1f} MiB (8 channels: {frames / 2**15:.0f})")
elif kind == "refuse":
    from server.audio.reading import read_audio
    from server.config import AudioSettings
    buf = io.BytesIO()
    sf.write(buf, np.zeros((1000, 255), np.float32), 16_000, format="OGG")
    data = buf.getvalue()
    before = rss_mib()
    def refuse():
        try:
            read_audio(data, AudioSettings())
        except Exception as exc:
            return exc.code
    seconds, out = timed(refuse, 20)
    row["result"] = out
elif kind == "vocabulary_check":
    from server.models.ctc.vocabulary import check_vocabulary_cost
    words = tuple(f"{i:04d}".translate(str.maketrans("0123456789", "abcdefghij")) * 2
                  for i in range(1000))
    before = rss_mib()
    seconds, out = timed(lambda: check_vocabulary_cost(words, 5.0), 20)
    row["result"] = "accepted (1,000 words, 5 s)"
row["ms"] = round(1000 * seconds, 3)
row["peak_rss_over_start_mib"] = round(rss_mib() - before)
print(json.dumps(row))
"""


def run_case(kind: str, arg: str, cap: int = 0) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CASE, kind, arg, str(cap)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )
    if proc.returncode != 0:
        return {
            "case": kind,
            "input": arg,
            "result": f"exit {proc.returncode}: " + proc.stderr.strip().splitlines()[-1][:120],
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", action="store_true", help="also run main's torchaudio resampler")
    parser.add_argument("--old-cap-gib", type=float, default=14.0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "load_tests/results/admission.json")
    args = parser.parse_args()
    rates = ["44100", "44101", "383987"]
    rows = [run_case("resample", rate) for rate in rates]
    if args.old:
        cap = int(args.old_cap_gib * 1024**3)
        rows += [run_case("resample_old", rate, cap) for rate in rates]
    rows += [run_case(kind, "") for kind in ("decode", "refuse", "vocabulary_check")]
    write_table(rows, args.out)


if __name__ == "__main__":
    main()
