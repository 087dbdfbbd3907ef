"""Build (or fetch from the cache) the whole testbed: corpus, tokenizer, teacher and student.

The artifact directory is keyed by a hash of the generator config and `VERSION`, built in a
temporary sibling directory and renamed into place only when complete, so a killed build never
leaves a half artifact and a finished one is reused instantly. Layout of `<root>`:

    data/{teacher_pretrain,student_pretrain,train,test}.jsonl
    tokenizer/            the shared tokenizer
    teacher/  student/    save_pretrained model + tokenizer (load with the Auto classes)
    config.json           the SyntheticConfig it was built from
    metrics.json          flat numbers: {teacher,student}_{accuracy,copy_rate,
                          accuracy_without_distractor,final_loss,parameters}, build_seconds
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from leafbench.determinism import fixed_cpu_threads
from leafbench.samples import write_jsonl
from leafbench.synthetic.corpus import SPLITS, generate_corpus
from leafbench.synthetic.models import tiny_llama
from leafbench.synthetic.pretrain import pretrain
from leafbench.synthetic.probe import answer_rates, without_distractors
from leafbench.synthetic.tokenizer import train_tokenizer
from leafbench.testbed_settings import GENERATOR_DEFAULTS, SyntheticConfig

VERSION = "5"  # bump when a change here changes what a given config builds
# 5: built with a fixed intra-op thread count (leafbench.determinism), whatever the cores


@dataclass(frozen=True)
class Testbed:
    """Paths of one built testbed; `metrics` is what build_testbed measured on the test split."""

    key: str
    root: Path
    tokenizer_dir: Path
    teacher_dir: Path
    student_dir: Path
    train_jsonl: Path
    test_jsonl: Path
    validation_jsonl: Path
    metrics: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def at(cls, root: Path) -> Testbed:
        return cls(
            key=root.name,
            root=root,
            tokenizer_dir=root / "tokenizer",
            teacher_dir=root / "teacher",
            student_dir=root / "student",
            train_jsonl=root / "data" / "train.jsonl",
            test_jsonl=root / "data" / "test.jsonl",
            validation_jsonl=root / "data" / "validation.jsonl",
            metrics=json.loads((root / "metrics.json").read_text()),
        )


def testbed_key(cfg: SyntheticConfig) -> str:
    """The cache key: VERSION and the config, leaving out the generator settings added later
    while they hold the values that reproduce the earlier testbeds (GENERATOR_DEFAULTS), so
    every testbed cached before they existed keeps its key."""
    unchanged = {name for name, value in GENERATOR_DEFAULTS.items()
                 if getattr(cfg, name) == value}
    dumped = cfg.model_dump_json(exclude=unchanged)
    return hashlib.sha256(f"{VERSION}\n{dumped}".encode()).hexdigest()[:16]


def build_testbed(cfg: SyntheticConfig, cache_root: Path, progress: bool = True) -> Testbed:
    """The testbed for `cfg` under `cache_root/synthetic/<key>`, built only if not cached."""
    root = Path(cache_root) / "synthetic" / testbed_key(cfg)
    if root.is_dir():
        return Testbed.at(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_builds(root)
    scratch = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        with fixed_cpu_threads():  # the weights depend on torch's thread count: see determinism
            _build_into(scratch, cfg, progress)
        try:
            scratch.rename(root)
        except OSError:
            if not root.is_dir():  # not a concurrent builder finishing first: a real failure
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Testbed.at(root)


def _remove_abandoned_builds(root: Path) -> None:
    """Delete scratch directories (of any key) whose building process no longer exists."""
    for scratch in root.parent.glob(".*.tmp-*"):
        pid = scratch.name.rsplit("-", 1)[1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(scratch, ignore_errors=True)
        except PermissionError:  # alive, owned by someone else
            pass


def _build_into(out: Path, cfg: SyntheticConfig, progress: bool) -> None:
    console = Console(stderr=True, quiet=not progress)
    started = time.perf_counter()
    (out / "data").mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"version": VERSION, **cfg.model_dump()}, indent=2))

    corpus = generate_corpus(cfg)
    for split in SPLITS:
        write_jsonl(out / "data" / f"{split}.jsonl", corpus[split])
    pretraining = corpus["teacher_pretrain"] + corpus["student_pretrain"]
    tokenizer = train_tokenizer((r["instruction"] + "\n" + r["response"] for r in pretraining),
                                cfg.vocab_size)
    tokenizer.save_pretrained(out / "tokenizer")
    console.log(f"synthetic testbed: corpus and tokenizer ({len(tokenizer)} tokens) ready")

    metrics: dict[str, Any] = {}
    pruned_test = [{**r, "instruction": without_distractors(r)} for r in corpus["test"]]
    for offset, (role, split) in enumerate((("teacher", "teacher_pretrain"),
                                            ("student", "student_pretrain"))):
        shape, seed = getattr(cfg, role), cfg.seed + offset
        model = tiny_llama(shape, tokenizer, seed)
        losses = pretrain(model, tokenizer, corpus[split], shape, seed, label=f"{role} pretraining",
                          progress=progress)
        model.save_pretrained(out / role)
        tokenizer.save_pretrained(out / role)
        rates = answer_rates(model, tokenizer, corpus["test"])
        metrics.update({
            f"{role}_accuracy": rates["accuracy"],
            f"{role}_copy_rate": rates["copy_rate"],
            f"{role}_accuracy_without_distractor":
                answer_rates(model, tokenizer, pruned_test)["accuracy"],
            f"{role}_final_loss": sum(losses[-20:]) / len(losses[-20:]),
            f"{role}_parameters": sum(p.numel() for p in model.parameters()),
        })
        console.log(f"synthetic testbed: {role} test accuracy {rates['accuracy']:.3f}, "
                    f"copies the distractor {rates['copy_rate']:.3f}")
    metrics["build_seconds"] = round(time.perf_counter() - started, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
