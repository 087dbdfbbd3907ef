"""Distillation benchmark: the production recipe against the official recipe, in one run.

Prints
  * distillation tokens/s of the production path (the `teach` stage's cached teacher outputs,
    length-grouped dynamic padding, the loss in checkpointed chunks at response positions only)
    and of the official recipe (every batch padded to the cutoff length, the teacher run on the
    fly every step, full-vocabulary float32 softmax of both models at every position), on the
    same tiny teacher/student and GSM8K train pairs with pruned counterfactuals, and the ratio;
  * teacher forward passes (sequences) of a 3-epoch run for both;
  * peak memory of one loss step (forward + backward) at vocabulary 32k, chunked loss vs full
    materialisation, each measured in a fresh process (peak RSS growth over the set-up);
  * the hybrid loss of a batch vs a plain per-token Python reference;
  * on the synthetic testbed, the mean absolute per-token KL error of top-k teacher targets
    against the exact distribution, for k in {8, 32, 128}.

Run: `nox -s bench` or `python -m leafbench.bench.distill [--pairs N] [--epochs E]`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from leafbench.bench.fixtures import gsm8k_pairs, tiny_models
from leafbench.config import validate_dict
from leafbench.distill.loss import TeacherTargets, chunked_divergence, token_kl, topk_targets
from leafbench.samples import EncodedPair, encode_pair, pad_batch, write_jsonl

CUTOFF = 1024  # the official recipe pads every batch to this (LLaMA-Factory cutoff_len)
MEMORY_VOCAB = 32_000


# ------------------------------------------------------------------ data
def counterfactual_items(pairs: list[tuple[str, str]], seed: int = 0) -> list[dict]:
    """Originals plus one counterfactual each, with a clause-sized span cut from the question
    (what span pruning produces), so lengths follow GSM8K's."""
    rng = random.Random(seed)
    items = []
    for n, (question, answer) in enumerate(pairs):
        items.append({"id": f"q{n:05d}", "original_id": f"q{n:05d}", "kind": "original",
                      "instruction": question, "response": answer, "loss_from": 0})
        width = max(1, len(question) // 8)
        start = rng.randrange(0, max(1, len(question) - width))
        items.append({"id": f"q{n:05d}#cf0", "original_id": f"q{n:05d}", "kind": "span",
                      "instruction": question[:start] + question[start + width:],
                      "response": answer, "loss_from": 0})
    return items


# ------------------------------------------------------------------ production recipe
def production(root: Path, items: list[dict], epochs: int, batch_size: int,
               cutoff: int = CUTOFF) -> dict:
    from leafbench.contract import ModelRefs, StageContext
    from leafbench.distill.teacher_cache import run_teach
    from leafbench.distill.trainer import run_distill

    exp = validate_dict({
        "models": {"teacher": str(root / "teacher"), "student": str(root / "student"),
                   "device": "cpu"},
        "data": {"max_length": cutoff},
        "distill": {"epochs": epochs, "batch_size": batch_size, "lr": 1e-4,
                    "save_every": 10_000, "teacher_cache": {"mode": "exact"}},
    })
    prune = root / "prune"
    prune.mkdir(exist_ok=True)
    write_jsonl(prune / "counterfactuals.jsonl", items)
    refs = ModelRefs(str(root / "teacher"), str(root / "student"), prune, None, {})
    teach_out, distill_out = root / "teach", root / "distill"
    teach_out.mkdir(exist_ok=True)
    distill_out.mkdir(exist_ok=True)
    start = time.perf_counter()
    teach = run_teach(StageContext(exp, teach_out, {"prune": prune}, refs, root))
    taught = time.perf_counter()
    distill = run_distill(StageContext(exp, distill_out, {"prune": prune, "teach": teach_out},
                                       refs, root))
    end = time.perf_counter()
    timing = [json.loads(x) for x in (distill_out / "timing.jsonl").read_text().splitlines()]
    return {"seconds": end - start, "teach_seconds": taught - start,
            "tokens": sum(t["tokens"] for t in timing),
            "teacher_sequences": teach["teacher_forward_items"] + distill["teacher_forward_passes"]}


# ------------------------------------------------------------------ official recipe
def official(tok, teacher, student, items: list[dict], epochs: int, batch_size: int,
             cutoff: int = CUTOFF) -> dict:
    """Pairs (original, counterfactual) padded to the cutoff; teacher on the fly; full-vocabulary
    float32 log-softmax of both models at every position; KL masked to the response."""
    from leafbench.distill.batching import build_pairs

    pairs = build_pairs(items)
    encs = [(encode_pair(tok, o["instruction"], o["response"], cutoff),
             encode_pair(tok, c["instruction"], c["response"], cutoff)) for o, c in pairs]
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    student.train()
    tokens, teacher_sequences = 0, 0
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(encs), generator=torch.Generator().manual_seed(epoch)).tolist()
        for s in range(0, len(order), batch_size):
            batch = [e for i in order[s : s + batch_size] for e in encs[i]]
            ids = torch.full((len(batch), cutoff), tok.pad_token_id)
            mask = torch.zeros((len(batch), cutoff), dtype=torch.long)
            loss_mask = torch.zeros((len(batch), cutoff))
            for r, e in enumerate(batch):
                ids[r, : len(e.input_ids)] = torch.tensor(e.input_ids)
                mask[r, : len(e.input_ids)] = 1
                loss_mask[r, e.loss_start - 1 : e.loss_end - 1] = 1
            with torch.no_grad():
                t_logp = F.log_softmax(teacher(input_ids=ids, attention_mask=mask).logits.float(), -1)
            s_logp = F.log_softmax(student(input_ids=ids, attention_mask=mask).logits.float(), -1)
            kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1)
            half = len(batch) // 2
            orig = (kl * loss_mask)[0::2].sum() / loss_mask[0::2].sum()
            cf = (kl * loss_mask)[1::2].sum() / loss_mask[1::2].sum()
            loss = 0.5 * orig + 0.5 * cf
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            tokens += sum(len(e.input_ids) for e in batch)
            teacher_sequences += 2 * half
    return {"seconds": time.perf_counter() - start, "tokens": tokens,
            "teacher_sequences": teacher_sequences}


# ------------------------------------------------------------------ memory (one process each)
class PeakRSS:
    """Samples this process's resident set every 0.5 ms in a thread; `peak` is the highest seen.

    ru_maxrss cannot isolate one step (it keeps the set-up's high-water mark), so the probe
    watches the resident set itself. The probe process runs with MALLOC_MMAP_THRESHOLD_ low, so
    every large tensor is its own mapping, returned to the system when freed: the resident set
    then follows the live tensors.
    """

    def __init__(self) -> None:
        import threading

        self.page = resource.getpagesize()
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def now(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.0005)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def memory_probe(variant: str, lengths: list[int], responses: list[int]) -> float:
    """Peak resident-set growth (MiB) during one loss step (forward + backward) at vocabulary
    32k, over the live memory before it (models, batch and teacher targets)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from leafbench.config import LossConfig

    torch.manual_seed(0)
    torch.set_num_threads(1)  # one thread: no per-thread arenas blur the figure
    config = LlamaConfig(vocab_size=MEMORY_VOCAB, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=CUTOFF, tie_word_embeddings=True)
    student = LlamaForCausalLM(config)
    encs = [EncodedPair(input_ids=torch.randint(5, MEMORY_VOCAB, (n,)).tolist(),
                        context_positions=[], context_offsets=[], context_sources=[],
                        loss_start=n - r, loss_end=n)
            for n, r in zip(lengths, responses, strict=True)]
    ids, mask = pad_batch(encs, 0, "cpu")
    positions = sum(responses)
    if variant == "full":
        full_teacher = torch.randn(len(lengths), ids.shape[1], MEMORY_VOCAB)
    elif variant == "chunked_exact":
        targets = TeacherTargets(logits=torch.randn(positions, MEMORY_VOCAB))
    else:
        parts = [topk_targets(torch.randn(min(64, positions - s), MEMORY_VOCAB), 128, 1.0)
                 for s in range(0, positions, 64)]
        targets = TeacherTargets.cat(parts)
    with PeakRSS() as rss:
        before = rss.now()
        if variant == "full":
            s_logp = F.log_softmax(student(input_ids=ids, attention_mask=mask).logits.float(), -1)
            t_logp = F.log_softmax(full_teacher.float(), -1)
            kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1)
            kl.mean().backward()
        else:
            hidden = student.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            rows = [r for r, e in enumerate(encs) for _ in range(e.loss_start, e.loss_end)]
            cols = [p - 1 for e in encs for p in range(e.loss_start, e.loss_end)]
            d = chunked_divergence(targets, hidden[rows, cols], student.get_output_embeddings(),
                                   1.0, chunk=LossConfig.model_validate({}).chunk_size)
            d.mean().backward()
    return (rss.peak - before) / 2**20


def measure_memory(lengths: list[int], responses: list[int]) -> dict[str, float]:
    out = {}
    for variant in ("full", "chunked_exact", "chunked_topk"):
        result = subprocess.run(
            [sys.executable, "-m", "leafbench.bench.distill", "--memory-probe", variant,
             "--lengths", ",".join(map(str, lengths)),
             "--responses", ",".join(map(str, responses))],
            capture_output=True, text=True, check=True,
            env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
        out[variant] = float(result.stdout.strip().splitlines()[-1])
    return out


# ------------------------------------------------------------------ fidelity
def hybrid_vs_reference() -> float:
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(12, 50, generator=g, dtype=torch.float64)
    student = torch.randn(12, 50, generator=g, dtype=torch.float64)
    lam, n_orig, t = 0.3, 5, 2.0
    kl = token_kl(teacher, student, t)
    loss = lam * kl[:n_orig].mean() + (1 - lam) * kl[n_orig:].mean()

    def plain(tr, sr):
        pt = [math.exp(x / t) for x in tr]
        ps = [math.exp(x / t) for x in sr]
        zt, zs = sum(pt), sum(ps)
        return t * t * sum(a / zt * (math.log(a / zt) - math.log(b / zs)) for a, b in zip(pt, ps, strict=True))

    ref = [plain(teacher[i].tolist(), student[i].tolist()) for i in range(12)]
    expected = lam * sum(ref[:n_orig]) / n_orig + (1 - lam) * sum(ref[n_orig:]) / (12 - n_orig)
    return abs(loss.item() - expected)


def topk_error(workspace: Path, n_items: int = 64) -> tuple[float, dict[int, float]]:
    """Mean exact KL per token, and mean |KL_topk − KL_exact| per token for each k, between the
    testbed's teacher and its (undistilled) student on the training split."""
    from leafbench.config import SyntheticConfig
    from leafbench.distill.forward import response_logits
    from leafbench.models import load_causal_lm, load_tokenizer
    from leafbench.samples import load_pairs
    from leafbench.synthetic import build_testbed

    testbed = build_testbed(SyntheticConfig(), workspace)
    tok = load_tokenizer(str(testbed.student_dir))
    teacher = load_causal_lm(str(testbed.teacher_dir), device="cpu").eval()
    student = load_causal_lm(str(testbed.student_dir), device="cpu").eval()
    rows = load_pairs(testbed.train_jsonl, n_items)
    encs = [encode_pair(tok, r["instruction"], r["response"], 512) for r in rows]
    with torch.no_grad():
        t_logits = response_logits(teacher, encs, tok.pad_token_id)[:, : len(tok)]
        s_logits = response_logits(student, encs, tok.pad_token_id)[:, : len(tok)]
        exact = token_kl(t_logits, s_logits, 1.0)
        errors = {k: (topk_targets(t_logits, k, 1.0).divergence(s_logits, 1.0, "forward_kl", 0.5)
                      - exact).abs().mean().item() for k in (8, 32, 128)}
    return exact.mean().item(), errors


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cutoff", type=int, default=CUTOFF,
                        help="the official recipe's padded length (and the truncation of both)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--workspace", type=Path, default=Path("leafbench-runs"),
                        help="where the synthetic testbed is built or found (top-k error)")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lengths", default="", help=argparse.SUPPRESS)
    parser.add_argument("--responses", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        lengths = [int(x) for x in args.lengths.split(",")]
        responses = [int(x) for x in args.responses.split(",")]
        print(memory_probe(args.memory_probe, lengths, responses))
        return

    torch.manual_seed(0)
    pairs = gsm8k_pairs(args.pairs, args.data_dir)
    items = counterfactual_items(pairs)
    tok, teacher, student = tiny_models()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher.save_pretrained(root / "teacher")
        tok.save_pretrained(root / "teacher")
        student.save_pretrained(root / "student")
        tok.save_pretrained(root / "student")
        fast = production(root, items, args.epochs, args.batch_size, args.cutoff)
    slow = official(tok, teacher, student, items, args.epochs, args.batch_size, args.cutoff)
    encoded = [encode_pair(tok, q, a, args.cutoff) for q, a in pairs]
    lengths = [len(e.input_ids) for e in encoded]
    print(f"pairs={len(pairs)} items={len(items)} epochs={args.epochs} "
          f"batch={args.batch_size} pairs/step cutoff={args.cutoff} "
          f"mean_length={sum(lengths) / len(lengths):.0f} vocab={len(tok)}")
    print(f"production recipe      {fast['tokens'] / fast['seconds']:10.1f} tokens/s "
          f"({fast['seconds']:.1f} s, teach stage {fast['teach_seconds']:.1f} s)")
    print(f"official recipe        {slow['tokens'] / slow['seconds']:10.1f} tokens/s "
          f"({slow['seconds']:.1f} s)")
    print(f"throughput ratio       {(fast['tokens'] / fast['seconds']) / (slow['tokens'] / slow['seconds']):10.2f}x")
    print(f"teacher forward passes over {args.epochs} epochs: production "
          f"{fast['teacher_sequences']:.0f} sequences (= {len(items)} distinct items, one pass), "
          f"official {slow['teacher_sequences']:.0f}")

    batch = encoded[: 2 * args.batch_size]
    peaks = measure_memory([len(e.input_ids) for e in batch], [e.n_loss for e in batch])
    print(f"loss-step peak memory at vocab {MEMORY_VOCAB} ({len(batch)} sequences, "
          f"{sum(e.n_loss for e in batch)} response tokens, GSM8K lengths):")
    for variant, mib in peaks.items():
        print(f"  {variant:<14} {mib:8.1f} MiB   ratio to full {mib / peaks['full']:.3f}")
    print(f"hybrid loss vs plain reference: |difference| = {hybrid_vs_reference():.2e}")
    mean_kl, errors = topk_error(args.workspace)
    print(f"top-k teacher targets on the synthetic testbed (mean exact KL {mean_kl:.4f} per token):")
    for k, err in errors.items():
        print(f"  k={k:<4} mean |KL_topk - KL_exact| per token = {err:.2e}")


if __name__ == "__main__":
    main()
