"""The "distracted arithmetic" corpus: addition word problems with one irrelevant number.

Every problem has two operands a, b and asks for a + b. One distractor clause carrying its own
number d ("Mia's brother is 7 years old.") is inserted before, between or after the operand
sentences. Whether d tells you anything about the answer is the knob of the testbed:

- teacher pretraining: d is drawn independently of the answer, so the only way to be right is
  to add;
- student pretraining: d equals the answer with probability `spurious_correlation`, so
  copying d is a shortcut that works;
- `train` (mining and distillation): d equals the answer with probability `train_correlation`
  (0 by default: the distractors are confounders the student must learn to ignore);
- `test`: d is independent of the answer and never equal to it, so the shortcut always fails.

A quarter of each pretraining corpus are plain problems without a distractor (see
CLEAN_FRACTION), so both models can add; the student merely learns to trust d when it is there.

Records carry the character spans of the distractor clause and of its number so later stages
(mining, evaluation) can check whether the mined confounders are the planted ones.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from leafbench.testbed_settings import SyntheticConfig

NAMES = ["Mia", "Leo", "Ava", "Sam", "Zoe", "Max", "Ivy", "Tom", "Ana", "Ben", "Eva", "Raj",
         "Kim", "Noah", "Lily", "Omar"]
ITEMS = ["apples", "pens", "books", "coins", "stickers", "marbles", "cards", "shells", "stamps",
         "cookies"]

# (first operand sentence, second operand sentence, question); {a} and {b} are the operands.
PROBLEMS = [
    ("{name} has {a} {item}.", "{name} buys {b} more {item}.",
     "How many {item} does {name} have now?"),
    ("{name} has {a} {item}.", "A friend gives {name} {b} more {item}.",
     "How many {item} does {name} have now?"),
    ("There are {a} {item} in the box.", "{name} puts {b} more {item} in the box.",
     "How many {item} are in the box now?"),
    ("{name} picked {a} {item} in the morning.", "{name} picked {b} {item} in the afternoon.",
     "How many {item} did {name} pick in total?"),
    ("{name} finds {a} {item} on Monday.", "On Tuesday {name} finds {b} {item}.",
     "How many {item} did {name} find?"),
    ("A shelf holds {a} {item}.", "{name} adds {b} {item} to the shelf.",
     "How many {item} are on the shelf now?"),
]

# Irrelevant facts; {d} is the distractor number and must come after any {name}.
DISTRACTORS = [
    "{name}'s brother is {d} years old.",
    "The shop is on floor {d}.",
    "{name} lives at house number {d}.",
    "The bus to school is number {d}.",
    "It is {d} degrees outside.",
    "{name}'s class is in room {d}.",
    "The cat next door is {d} years old.",
    "Train {d} leaves at noon.",
]

SPLITS = ("teacher_pretrain", "student_pretrain", "train", "test", "validation")
# Share of pretraining problems with no distractor at all. Both models must answer such plain
# problems: the teacher because LeaF distils on counterfactuals with the distractor removed, the
# student so that it can add and is only led astray when a distractor is present.
CLEAN_FRACTION = 0.25
ANSWER_PATTERN = re.compile(r"The answer is (-?\d+)")


# The forms a distractor clause can take (`distractor_form`); {d} must come after any other
# field. "fact" is the original testbed's; "quantity" has the operand sentences' own shape (a
# count of the same items, held by someone else); "unit" measures the items.
DISTRACTOR_FORMS: dict[str, list[str]] = {
    "fact": DISTRACTORS,
    "quantity": [
        "{other} has {d} {item}.",
        "{other} bought {d} {item} last week.",
        "There are {d} {item} in the shop next door.",
        "{other} gave away {d} {item} yesterday.",
    ],
    "unit": [
        "The {item} weigh {d} grams.",
        "Each of the {item} costs {d} cents.",
        "The box of {item} is {d} centimetres wide.",
        "{name} walked {d} metres to the shop.",
    ],
}
FORM_NAMES = ("fact", "quantity", "unit")
# Number-free sentences that only make the context longer (`filler_sentences`).
FILLERS = [
    "The sky is clear today.",
    "{name} likes to sing.",
    "Everyone had a nice day.",
    "The weather is mild.",
    "{name} smiles at a friend.",
    "It is a quiet afternoon.",
]


@dataclass(frozen=True)
class Shape:
    """How a distracted problem is laid out (the SyntheticConfig fields of the same names);
    the defaults are the original testbed's."""

    n_distractors: int = 1
    distractor_form: str = "fact"
    distractor_position: str = "any"
    filler_sentences: int = 0

    @classmethod
    def of(cls, cfg: SyntheticConfig) -> Shape:
        return cls(cfg.n_distractors, cfg.distractor_form, cfg.distractor_position,
                   cfg.filler_sentences)


def _distractor_number(rng: random.Random, rule: str, answer: int, max_operand: int
                       ) -> int | None:
    if rule == "answer":
        return answer
    if rule == "independent":
        return rng.randint(0, 2 * max_operand)
    if rule == "not_answer":
        return rng.choice([n for n in range(2 * max_operand + 1) if n != answer])
    if rule == "none":
        return None
    raise ValueError(f"distractor rule {rule!r}: expected independent|answer|not_answer|none")


def make_problem(rng: random.Random, max_operand: int, distractor: str, pid: str,
                 shape: Shape = Shape()) -> dict:
    """One record. `distractor` says how d relates to the answer:
    `independent` (uniform over the answer range), `answer` (d == a + b),
    `not_answer` (uniform over the answer range without the answer) or `none` (no distractor
    clause; both span lists are empty). With `shape.n_distractors` > 1 only the first clause
    follows the rule; the others are unrelated to the answer (never equal to it under
    `not_answer`). The random draws at the default shape are the original testbed's, in the
    same order, so its corpora are reproduced byte for byte."""
    a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
    answer = a + b
    d = _distractor_number(rng, distractor, answer, max_operand)

    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    first, second, question = (t.format(name=name, item=item, a=a, b=b)
                               for t in rng.choice(PROBLEMS))
    record: dict[str, Any] = {
        "id": pid,
        "instruction": " ".join([first, second, question]),
        "response": f"{a} + {b} = {answer}. The answer is {answer}.",
        "answer": str(answer),
        "distractor_spans": [],
        "distractor_number_spans": [],
    }
    if d is None:
        return record
    # (sentence, (offset, length) of its distractor number or None) in reading order.
    parts: list[tuple[str, tuple[int, int] | None]] = [(first, None), (second, None)]
    extra_rule = "not_answer" if distractor == "not_answer" else "independent"
    for k in range(shape.n_distractors):
        number = d if k == 0 else _distractor_number(rng, extra_rule, answer, max_operand)
        form = shape.distractor_form if shape.distractor_form != "mixed" else rng.choice(FORM_NAMES)
        template = rng.choice(DISTRACTOR_FORMS[form])
        other = (rng.choice([n for n in NAMES if n != name]) if "{other}" in template else "")
        fields = {"name": name, "other": other, "item": item}
        clause = template.format(d=number, **fields)
        offset = len(template[: template.index("{d}")].format(**fields))
        parts.insert(_slot(rng, shape.distractor_position, parts, first),
                     (clause, (offset, len(str(number)))))
    for _ in range(shape.filler_sentences):
        filler = rng.choice(FILLERS).format(name=name)
        parts.insert(rng.randint(0, len(parts)), (filler, None))
    record["instruction"] = " ".join([*(text for text, _ in parts), question])
    start = 0
    for text, located in parts:
        if located is not None:
            offset, length = located
            record["distractor_spans"].append([start, start + len(text)])
            record["distractor_number_spans"].append([start + offset, start + offset + length])
        start += len(text) + 1
    return record


def _slot(rng: random.Random, position: str, parts: list[tuple[str, Any]], first: str) -> int:
    """Where the next distractor clause goes among the sentences before the question."""
    if position == "any":  # before, between or after the operand sentences (and earlier clauses)
        return rng.randint(0, len(parts))
    if position == "first":
        return 0
    if position == "last":
        return len(parts)
    if position == "between":
        return [text for text, _ in parts].index(first) + 1
    raise ValueError(f"distractor position {position!r}: expected any|first|between|last")


def generate_split(cfg: SyntheticConfig, split: str, exclude: frozenset[str] = frozenset()
                   ) -> list[dict]:
    """Records of one split, determined by (cfg.seed, split) alone; instructions in `exclude`
    (the test set's) are redrawn so no test problem is seen during training. Only the two
    pretraining splits hold plain problems (CLEAN_FRACTION); every train and test record has
    exactly one distractor."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {SPLITS}")
    rng = random.Random(f"leafbench-synthetic/{cfg.seed}/{split}")
    n = {"teacher_pretrain": cfg.n_pretrain, "student_pretrain": cfg.n_pretrain,
         "train": cfg.n_train, "test": cfg.n_test, "validation": cfg.n_validation}[split]
    clean_fraction = getattr(cfg, "clean_fraction", CLEAN_FRACTION)  # a config field, once there
    shape = Shape.of(cfg)
    records: list[dict] = []
    while len(records) < n:
        if split.endswith("pretrain") and rng.random() < clean_fraction:
            rule = "none"
        elif split in ("test", "validation"):  # the same world: d never equals the answer
            rule = "not_answer"
        elif split == "teacher_pretrain":
            rule = "independent"
        elif split == "train":  # mining and distillation data
            rule = "answer" if rng.random() < cfg.train_correlation else "independent"
        else:  # the student's world: the distractor leaks the answer
            rule = "answer" if rng.random() < cfg.spurious_correlation else "independent"
        record = make_problem(rng, cfg.max_operand, rule, f"{split}-{len(records):05d}", shape)
        if record["instruction"] not in exclude:
            records.append(record)
    return records


def generate_corpus(cfg: SyntheticConfig) -> dict[str, list[dict]]:
    """All five splits: teacher_pretrain, student_pretrain, train (used for mining and
    distillation; d = answer with probability train_correlation), test (d never equals the
    answer) and validation (drawn like test, for tuning: sweeps score it, never the test split).

    Validation comes from its own random stream and last, redrawing anything seen in another
    split, so adding it changed none of the other four."""
    test = generate_split(cfg, "test")
    seen = frozenset(r["instruction"] for r in test)
    corpus = {split: generate_split(cfg, split, exclude=seen)
              for split in ("teacher_pretrain", "student_pretrain", "train")}
    corpus["test"] = test
    everything = frozenset(r["instruction"] for records in corpus.values() for r in records)
    corpus["validation"] = generate_split(cfg, "validation", exclude=everything)
    return corpus


def extract_answer(text: str) -> str | None:
    """The number after the last "The answer is", or None when the text has none."""
    found = ANSWER_PATTERN.findall(text)
    return found[-1] if found else None


