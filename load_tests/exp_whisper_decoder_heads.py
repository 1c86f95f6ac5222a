"""Do heads on Whisper's DECODER layers help? Encoder-only HRA vs encoder + decoder HRA.

Both arms start from models/whisper-tiny-en (its trained controller and linear heads,
the full recipe) and get the same extra training budget, `--steps` steps of 8 rows on
the recipe's training set (7 sentence domains + 6 FSDD speakers, takes 0-29):
    encoder_only     the 13 encoder heads trained on (controller frozen)
    encoder_decoder  the same, plus a second controller over the 4 decoder layers
                     (server/models/whisper/decoder_hra.py, seeded) and one decoder head
                     per task (V_dec [384, 64], zero at start), all trained together
Then each arm's WER per task on the test sets (FSDD takes 30-39, held-out sentences),
greedy without timestamps in the `cut` window, both decoded by the same loop here; and
the decode cost of the decoder heads (B=32 greedy, with vs without the hook, CPU time).

    PYTHONPATH=. nice .venv/bin/python -m load_tests.exp_whisper_decoder_heads \\
        --work-dir /work/build/work --steps 150
Writes load_tests/results/whisper-decoder-heads.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from adapters_store.disk_store import DiskStore
from adapters_store.head_format import HeadType
from server.config import REPO_ROOT, Settings
from server.data.manifest import load_audio
from server.models.backbone import padding_mask
from server.models.whisper.decoder_hra import DecoderHRA
from server.models.whisper.encoder import additive_mask
from server.training.recipes import HeadPools
from server.training.trainer import TrainConfig
from server.training.whisper.data import WhisperSet
from server.training.whisper.evaluate import test_utterances, wer
from server.training.whisper.recipe import WhisperRecipe, load_trained, training_utterances
from server.training.whisper.trainer import train

logger = logging.getLogger("load_tests.exp_whisper_decoder_heads")
MODEL_DIR = REPO_ROOT / "models" / "whisper-tiny-en"


def trained_pools(task_ids: list[str]) -> HeadPools:
    store = DiskStore(MODEL_DIR / "heads")
    pools = HeadPools(HeadType.LINEAR, task_ids, shapes={})
    pools.pools = nn.ParameterDict(
        {"V": nn.Parameter(torch.stack([store.get(t).tensors["V"] for t in task_ids]))}
    )
    return pools


@torch.inference_mode()
def greedy(whisper, hra, feats, enc_heads, hook, max_tokens: int = 48) -> list[str]:
    tok, dec = whisper.tokenizer, whisper.decoder
    lengths = torch.tensor([f.shape[0] for f in feats])
    inputs = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    encoded, enc_len = hra(inputs, lengths, enc_heads)
    pad = padding_mask(enc_len, encoded.shape[1])
    state = dec.start(encoded, additive_mask(pad, encoded.dtype) if bool(pad.any()) else None)
    prompt = torch.tensor([tok.prompt(False)] * len(feats))
    logits, state = dec(prompt, state, adapt=hook)
    suppress = sorted(set(whisper.config.suppress_ids) | set(tok.special_ids()))
    out = [[] for _ in feats]
    done = torch.zeros(len(feats), dtype=torch.bool)
    for step in range(max_tokens):
        step_logits = logits[:, -1].float()
        step_logits[:, suppress] = float("-inf")
        if step == 0:
            step_logits[:, list(whisper.config.suppress_ids_begin)] = float("-inf")
        nxt = step_logits.argmax(dim=-1).masked_fill(done, tok.eot)
        for b, t in enumerate(nxt.tolist()):
            if not done[b] and t != tok.eot:
                out[b].append(t)
        done |= nxt == tok.eot
        if bool(done.all()):
            break
        logits, state = dec(nxt[:, None], state, adapt=hook)
    return [tok.decode(t).strip() for t in out]


def evaluate(whisper, hra, pools, dec_hra, dec_heads, tests, task_ids) -> dict[str, float]:
    out = {}
    for task in task_ids:
        rows = [u for u in tests if u.task == task]
        feats = [whisper.encoder.featurize(load_audio(u.audio)) for u in rows]
        slot = torch.tensor(task_ids.index(task))
        hyps = []
        for i in range(0, len(feats), 16):
            chunk = feats[i : i + 16]
            tasks = slot.repeat(len(chunk))
            hook = None if dec_hra is None else dec_hra.bind(dec_heads[tasks].detach())
            hyps += greedy(whisper, hra, chunk, pools.head_batch(tasks), hook)
        out[task] = wer([u.text for u in rows], hyps)
        logger.warning("%s %.3f", task, out[task])
    return out


def decode_cost(whisper, hra, pools, dec_hra, dec_heads, tests, task_ids, repeats=5) -> dict:
    clips = [u for u in tests][:: max(1, len(tests) // 32)][:32]
    feats = [whisper.encoder.featurize(load_audio(u.audio)) for u in clips]
    tasks = torch.tensor([task_ids.index(u.task) for u in clips])
    heads = pools.head_batch(tasks)
    ratios = []
    for _ in range(repeats):
        t0 = time.process_time()
        greedy(whisper, hra, feats, heads, None)
        t1 = time.process_time()
        greedy(whisper, hra, feats, heads, dec_hra.bind(dec_heads[tasks].detach()))
        t2 = time.process_time()
        ratios.append((t1 - t0) / (t2 - t1))
    return {"batch": len(feats), "ratio_median": statistics.median(ratios), "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work-dir", type=Path, default=Settings().work_dir)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "load_tests" / "results" / "whisper-decoder-heads.json",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    settings = Settings()
    whisper, hra, _ = load_trained(MODEL_DIR, args.work_dir / "whisper")
    recipe = WhisperRecipe()
    sentences = args.work_dir / "whisper-tiny-en" / "sentences"
    data = WhisperSet.build(training_utterances(sentences, settings.fsdd_root, recipe), whisper)
    task_ids = data.task_ids
    tests = test_utterances(sentences, settings.fsdd_root, recipe.domains, None)
    config = TrainConfig(steps=args.steps, lr=3e-3, warmup=10, checkpoint_every=args.steps)
    results: dict = {"steps": args.steps, "rows": 8, "tasks": task_ids}

    enc = trained_pools(task_ids)
    began = time.time()
    train(
        whisper, hra, {"head.V": enc.pools["V"]}, data, lambda b: enc.head_batch(b.tasks), config, 8
    )
    results["encoder_only_train_s"] = round(time.time() - began, 1)
    results["encoder_only"] = evaluate(whisper, hra, enc, None, None, tests, task_ids)

    both = trained_pools(task_ids)
    torch.manual_seed(1)
    dec_hra = DecoderHRA(whisper.decoder.embedding.shape[1], 64)
    dec_heads = nn.Parameter(torch.zeros(len(task_ids), whisper.decoder.embedding.shape[1], 64))
    params = {"head.V": both.pools["V"], "dec.V": dec_heads}
    params.update({f"dec.{k}": v for k, v in dec_hra.named_parameters()})
    began = time.time()
    train(
        whisper,
        hra,
        params,
        data,
        lambda b: both.head_batch(b.tasks),
        config,
        8,
        adapt_for=lambda b: dec_hra.bind(dec_heads[b.tasks]),
    )
    results["encoder_decoder_train_s"] = round(time.time() - began, 1)
    results["encoder_decoder"] = evaluate(whisper, hra, both, dec_hra, dec_heads, tests, task_ids)
    results["decode_cost"] = decode_cost(whisper, hra, both, dec_hra, dec_heads, tests, task_ids)
    results["params_per_task"] = {"encoder_head": 384 * 64, "decoder_head": 384 * 64}
    print("| task | encoder only | encoder + decoder |")
    print("|---|---|---|")
    for t in task_ids:
        enc_only, enc_dec = results["encoder_only"][t], results["encoder_decoder"][t]
        print(f"| {t} | {100 * enc_only:.1f}% | {100 * enc_dec:.1f}% |")
    for arm in ("encoder_only", "encoder_decoder"):
        results[f"{arm}_mean"] = statistics.mean(results[arm].values())
    enc_only, enc_dec = results["encoder_only_mean"], results["encoder_decoder_mean"]
    print(f"| **mean** | {100 * enc_only:.2f}% | {100 * enc_dec:.2f}% |")
    ratio = results["decode_cost"]["ratio_median"]
    print(f"decode speed without / with decoder heads, B=32: {ratio:.3f}")
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
