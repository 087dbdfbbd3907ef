"""The embedded default's testbed, pinned: the figures `experiments/demo.yaml` starts from.

The demo's headline (teacher, student before, student after) starts from the testbed's two
pretrained models, so a testbed that drifts silently makes the README's figures wrong on a
fresh clone. This module builds the testbed exactly as the demo does and checks its
headline accuracies against the figures recorded below:

- under the pinned version set (`locks/cpu.txt` or `locks/cuda.txt`: torch, transformers and
  tokenizers equal to a lock's pins), exactly, against the figures of this machine's CPU class:
  the build is deterministic, so any change is a real change of what the testbed builds (bump
  `VERSION` in synthetic/testbed.py and record the new figures here and in the README); on a
  class with no recorded figures, within `CPU_BAND` of the first set, with a warning that
  names the figures to record;
- under any other versions (`nox -s tests-latest`), within `DRIFT_BAND`: newer kernels or a
  changed weight initialisation move the figures a little, never the testbed's story.

It also checks what the exact pin relies on: the build gives the same bits whatever torch's
intra-op thread count (so neither the number of cores nor the machine's load matters) and the
tokenizer trainer gives the same merges with and without its thread pool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from packaging.version import Version

from leafbench.config import SyntheticConfig, TinyModelConfig, load_experiment
from leafbench.determinism import cpu_class
from leafbench.synthetic import build_testbed

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "demo.yaml"

# What build_testbed measures for the demo's testbed under the pinned versions (VERSION "5"),
# on the 200 test problems: metrics.json of a build under locks/cpu.txt. Exact per CPU class
# (leafbench.determinism.cpu_class: the vector kernels torch and MKL pick add in other orders).
# The first set was recorded on the machines CI ran on until November 2026, whose class was not
# recorded; it stands for every class not named below.
PINNED_FIGURES = {
    "teacher_accuracy": 1.0,
    "teacher_copy_rate": 0.0,
    "teacher_accuracy_without_distractor": 1.0,
    "student_accuracy": 0.135,
    "student_copy_rate": 0.33,
    "student_accuracy_without_distractor": 0.96,
}
FIGURES_BY_CPU_CLASS = {
    # AMD EPYC (Zen 3: AVX2, no AVX-512), measured 2026-12-01
    "AuthenticAMD 25/1 AVX2": {**PINNED_FIGURES, "student_accuracy": 0.1,
                               "student_copy_rate": 0.365,
                               "student_accuracy_without_distractor": 0.955},
    # Intel Xeon, family 6 model 167 (AVX-512), measured 2026-12-02
    "GenuineIntel 6/167 AVX512": {**PINNED_FIGURES, "student_accuracy": 0.11,
                                  "student_copy_rate": 0.325},
}
# On a class not recorded above the exact figures are unknown: the pinned versions must land
# within this much of the first set. The three classes measured differ by up to 0.035 (7 of the
# 200 problems: student accuracy 0.100 / 0.110 / 0.135); a real change of the build moves more.
CPU_BAND = 0.05
# Newer releases may move an accuracy by this much (6 of the 200 test problems) and no more.
DRIFT_BAND = 0.03
# The packages whose versions decide what the build computes; used when no lock file exists.
DECIDING = ("torch", "transformers", "tokenizers")
RECORDED_PINS = {"torch": "2.13.0", "transformers": "5.24.0", "tokenizers": "0.23.3"}


def lock_pins() -> list[dict[str, str]]:
    """The deciding packages' pins of each lock file (`name==version` or `name===version`
    lines), or the versions recorded beside PINNED_FIGURES when there are no lock files."""
    found = []
    for lock in sorted((REPO / "locks").glob("*.txt")):
        pins = {}
        for line in lock.read_text().splitlines():
            name, sep, pinned = line.split("#")[0].strip().partition("==")
            if sep and name.lower() in DECIDING:
                pins[name.lower()] = pinned.lstrip("=").strip()
        if set(pins) == set(DECIDING):
            found.append(pins)
    return found or [RECORDED_PINS]


def installed_is_pinned() -> bool:
    """True when the installed deciding packages equal some lock's pins. Versions compare
    without the build label: the testbed is built on the CPU, where torch's CPU and CUDA
    wheels of one version run the same kernels."""
    installed = {name: Version(version(name)).public for name in DECIDING}
    return any(all(installed[name] == Version(pins[name]).public for name in DECIDING)
               for pins in lock_pins())


@pytest.fixture(scope="module")
def demo_testbed(tmp_path_factory):
    """The demo's testbed, built from scratch (about 70 s on a quiet 2-core CPU)."""
    exp = load_experiment(DEMO)
    return build_testbed(exp.synthetic, tmp_path_factory.mktemp("demo-testbed"), progress=False)


def test_demo_testbed_tells_the_story(demo_testbed):
    """What every version set must give: the teacher adds, the student copies the distractor
    yet can add once the distractor is gone, so LeaF has something to repair."""
    m = demo_testbed.metrics
    assert m["teacher_accuracy"] >= 0.9
    assert m["teacher_accuracy_without_distractor"] >= 0.9  # sound counterfactuals
    assert m["student_accuracy"] <= 0.5
    assert m["student_copy_rate"] >= 0.25  # wrong because it follows the distractor
    assert m["student_accuracy_without_distractor"] >= 0.5  # it can add


def test_demo_testbed_figures_are_pinned(demo_testbed):
    """Exact on a recorded CPU class under the pinned versions; within a band otherwise (other
    versions, or a class whose figures nobody has recorded yet — said in a warning)."""
    cpu = cpu_class()
    recorded = cpu in FIGURES_BY_CPU_CLASS
    pinned = FIGURES_BY_CPU_CLASS.get(cpu, PINNED_FIGURES)
    measured = {name: demo_testbed.metrics[name] for name in pinned}
    exact = installed_is_pinned() and recorded
    if exact:
        assert measured == pinned, (
            f"the pinned versions build a different testbed on this CPU ({cpu}): {measured}. "
            "If the change is intended, bump VERSION in leafbench/synthetic/testbed.py and "
            "record the new figures here and in the README")
        return
    if not recorded:
        warnings.warn(f"CPU class {cpu!r} has no recorded testbed figures; it measured "
                      f"{measured}: record them in FIGURES_BY_CPU_CLASS", stacklevel=1)
    # a recorded class under other versions: DRIFT_BAND, as before; an unrecorded one: CPU_BAND more
    band = (0 if recorded else CPU_BAND) + (0 if installed_is_pinned() else DRIFT_BAND)
    drift = {name: round(measured[name] - pinned[name], 3) for name in measured}
    assert all(abs(d) <= band + 1e-9 for d in drift.values()), (
        f"the testbed moved by more than {band} on {cpu} (recorded class: {recorded}, pinned "
        f"versions: {installed_is_pinned()}): {drift}")


def test_the_cpu_class_names_vendor_and_vector_capability():
    vendor, *_, capability = cpu_class().split(" ")
    assert vendor and capability == torch.backends.cpu.get_cpu_capability()


def test_thread_count_does_not_change_the_build(tmp_path):
    """torch splits work across its intra-op threads and the split changes float32 sums (3
    threads build other weights than 1, 2 or 4 do), so build_testbed fixes the count: the
    weights must not depend on the caller's setting or the machine's cores."""
    cfg = SyntheticConfig(
        n_pretrain=400, n_train=8, n_test=16,
        teacher=TinyModelConfig(layers=2, hidden=128, heads=4, steps=12, batch_size=32),
        student=TinyModelConfig(layers=1, hidden=64, heads=2, steps=8, batch_size=32),
    )
    before = torch.get_num_threads()
    weights = {}
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            tb = build_testbed(cfg, tmp_path / str(threads), progress=False)
            weights[threads] = [(d / "model.safetensors").read_bytes()
                                for d in (tb.teacher_dir, tb.student_dir)]
    finally:
        torch.set_num_threads(before)
    assert weights[1] == weights[3]


def test_tokenizer_training_is_the_same_with_or_without_parallelism(tmp_path):
    """The BPE trainer counts pairs on a thread pool and each process seeds its hash maps
    anew; the merges must not depend on either."""
    script = (
        "import sys; from leafbench.config import SyntheticConfig;"
        "from leafbench.synthetic import generate_corpus, train_tokenizer;"
        "c = generate_corpus(SyntheticConfig(n_pretrain=1500, n_train=8, n_test=8));"
        "texts = [r['instruction'] + '\\n' + r['response'] for r in c['teacher_pretrain']];"
        "train_tokenizer(texts, 600).save_pretrained(sys.argv[1])"
    )
    saved = {}
    for parallel in ("true", "false"):
        out = tmp_path / parallel
        env = {**os.environ, "TOKENIZERS_PARALLELISM": parallel}
        subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=True)
        saved[parallel] = json.loads((out / "tokenizer.json").read_text())
    assert saved["true"] == saved["false"]
