"""Model references: a local directory has a config and a tokenizer; a hub id resolves.

`from_pretrained` fails on a bad reference only when a stage loads the model, in a traceback of
transformers' making; here a directory is checked for the files loading reads, and a hub id is
probed (`leafbench.preflight.hub`) at the revision given, or found in the local cache offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from leafbench.config import Experiment
from leafbench.errors import ConfigError
from leafbench.preflight import hub

if TYPE_CHECKING:
    from leafbench.preflight import Context

# Any of these is a tokenizer `AutoTokenizer.from_pretrained` can open.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


# Stages that load both models (mining, the teacher pass, distillation, attention before and
# after, the preliminary experiment's mined items); evaluation loads only the roles it scores.
TRAINING_STAGES = ("mine", "teach", "distill", "interpret", "preliminary")
EVALUATED_AS = {"teacher": {"teacher"}, "student": {"student_before", "student_after"}}


def check_experiment(exp: Experiment, ctx: Context) -> list[ConfigError]:
    found = []
    for role in ("teacher", "student"):
        if not _loaded(exp, ctx, role):
            continue  # a Pre-KD row never needs the (gated, 70B) teacher
        ref = getattr(exp.models, role)
        problem = reference_problem(ref, None, ctx.hub_timeout_s)
        if problem:
            found.append(ConfigError(ctx.source, f"models.{role}", ref, problem))
    return found


def _loaded(exp: Experiment, ctx: Context, role: str) -> bool:
    if any(ctx.runs(stage) for stage in TRAINING_STAGES):
        return True
    return ctx.runs("evaluate") and bool(EVALUATED_AS[role] & set(exp.evaluate.models))


def reference_problem(ref: str, revision: str | None, timeout_s: float) -> str | None:
    """What is wrong with a model reference (None: it can be loaded)."""
    if ref.startswith("synthetic:"):
        return None  # the testbed builds it; config validation checked the name
    path = Path(ref).expanduser()
    if path.is_dir():
        return directory_problem(path)
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        return "no such directory; give an existing model directory or a hub id ('owner/name')"
    return hub.probe(ref, revision=revision, timeout_s=timeout_s)


def directory_problem(path: Path) -> str | None:
    config = path / "config.json"
    if not config.is_file():
        return "the directory has no config.json: not a saved transformers model"
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return f"its config.json is not valid JSON ({err}); re-save the model"
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        return (f"the directory has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save "
                "the tokenizer beside the model (tokenizer.save_pretrained)")
    return None


def vocab_size(ref: str, revision: str | None = None) -> int | None:
    """The vocabulary size a model's config.json declares, from its directory or the hub cache
    (after a probe put it there); None where it is not at hand."""
    path = Path(ref).expanduser()
    config = path / "config.json" if path.is_dir() else _cached_config(ref, revision)
    if config is None or not config.is_file():
        return None
    try:
        size = json.loads(config.read_text(encoding="utf-8")).get("vocab_size")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    return size if isinstance(size, int) else None


def _cached_config(ref: str, revision: str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(ref, "config.json", cache_dir=hub.cache_dir(),
                                       revision=revision)
    except Exception:  # noqa: BLE001 - an id the cache cannot parse simply has no cached file
        return None
    return Path(found) if isinstance(found, str) else None
