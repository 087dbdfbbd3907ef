"""Logit distillation compares the teacher's and the student's distributions token by token,
so both must index the same vocabulary. Embedding matrices padded to different sizes (a 72B
teacher with rows for 152064 ids, a 1.5B student with 151936) are fine: the loss is cut to the
tokenizer's real vocabulary. A different tokenizer is not, and it is refused before any model
is loaded — at `leafbench validate` for local directories (their tokenizer.json is read as
plain JSON, no torch import), and at the start of `leafbench run` for hub ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leafbench.errors import ConfigError


def tokenizer_json_vocab(model_dir: Path) -> dict[str, int] | None:
    """The id of every token in a directory's tokenizer.json (added tokens included), if any."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = dict((data.get("model") or {}).get("vocab") or {})
    vocab.update({tok["content"]: tok["id"] for tok in data.get("added_tokens", [])})
    return vocab


def vocabulary_mismatch(teacher: dict[str, int], student: dict[str, int]) -> str | None:
    """None when both map every token to the same id; else what differs, in one line."""
    if teacher == student:
        return None
    only_t = sorted(set(teacher) - set(student), key=lambda t: teacher[t])
    only_s = sorted(set(student) - set(teacher), key=lambda t: student[t])
    moved = sorted((t for t in set(teacher) & set(student) if teacher[t] != student[t]),
                   key=lambda t: teacher[t])
    parts = [f"teacher has {len(teacher)} tokens, student {len(student)}"]
    if only_t:
        parts.append(f"{len(only_t)} only in the teacher's (e.g. {only_t[:3]})")
    if only_s:
        parts.append(f"{len(only_s)} only in the student's (e.g. {only_s[:3]})")
    if moved:
        parts.append(f"{len(moved)} with different ids (e.g. {moved[0]!r}: teacher "
                     f"{teacher[moved[0]]}, student {student[moved[0]]})")
    return "; ".join(parts)


MISMATCH = ("logit distillation needs one tokenizer for teacher and student (padded embedding "
            "sizes are fine, different vocabularies are not): ")


def loaded_mismatch(teacher_ref: str, student_ref: str) -> str | None:
    """Compare the tokenizers a run will load (hub ids included)."""
    from leafbench.models import load_tokenizer

    return vocabulary_mismatch(load_tokenizer(teacher_ref).get_vocab(),
                               load_tokenizer(student_ref).get_vocab())


def local_mismatch(teacher_ref: str, student_ref: str) -> str | None:
    """Compare two local model directories' tokenizer.json without importing transformers."""
    teacher = tokenizer_json_vocab(Path(teacher_ref).expanduser())
    student = tokenizer_json_vocab(Path(student_ref).expanduser())
    if teacher is None or student is None:
        return None
    return vocabulary_mismatch(teacher, student)


def check(teacher_ref: str, student_ref: str, loader: Any = loaded_mismatch) -> None:
    """Raise a ConfigError naming models.teacher when the two vocabularies differ."""
    problem = loader(teacher_ref, student_ref)
    if problem:
        raise ConfigError("models", "models.teacher", teacher_ref, MISMATCH + problem)
