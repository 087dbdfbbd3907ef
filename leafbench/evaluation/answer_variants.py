r"""The answer-variant suite: does a grading mode accept the gold in every notation, and only it?

Replaying gold solutions shows that a checker accepts the gold *string*. This suite writes, for
every item of GSM8K, MATH-500 and OlympiadBench, responses whose final answer is

- the gold in an **equivalent** form (`EQUIVALENT` kinds: `\dfrac`, `\left(`, spacing, exact
  decimals for fractions, units in `\text{}`, degree marks, thousands separators, `x = ...`,
  unordered lists reordered, percent signs, money with `$` and `\$`, `\text{}` wrappers, a box
  or "The answer is"), which a right grader accepts, or
- a **near miss** (`NEAR_MISS` kinds: another item's gold, off by one, a sign flip, a truncated
  answer, a swapped ordered tuple, a wrong base, a rounded value where the exact one is asked),
  which a right grader rejects,

and judges each with a grading mode exactly as a run does (`grading.Grader.verdict`, the
`strict-match` filter: the headline). A kind builds nothing for an item it does not fit (no
thousands separator for 12, no sign flip for a list); which items a kind fits is decided from the
gold and the question by this module's own small parser (`exact_value`, sympy on a plain
translation of the LaTeX), never by the grader under test.

Generation is deterministic: one `random.Random(seed, task, doc_id, kind)` per item and kind.
`run_suite` judges every variant (the benchmark script `python -m leafbench.bench.answer_variants`
prints the table); `stratified_sample` picks a fixed sample per kind and task (the default tests).

Expected rates: `strict` accepts every equivalent form and no near miss, except the listed
`KNOWN_EXCEPTIONS`. `paper` (the Qwen2.5-Math toolkit's rules) by design accepts rounded values
within 1e-4 and percent forms either way, compares lists in order (so reordered unordered lists
fail), and strips unit words and single letters, so its rates differ; the benchmark prints them.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

from leafbench.evaluation.grading import FILTERS, get_grader
from leafbench.evaluation.paper_grading import top_level_parts
from leafbench.evaluation.registry import get_task

TASKS = ("leaf_gsm8k", "leaf_math500", "leaf_olympiadbench")
SEED = 20250611


@dataclass(frozen=True)
class Item:
    """One benchmark item: its doc as the task loads it, and its gold as an answer text."""

    task: str
    doc_id: int
    doc: Mapping[str, Any]
    gold: str  # what a model would box: GSM8K's number, MATH's answer, OlympiadBench's parts
    question: str

    @property
    def multiple(self) -> bool:
        return bool(self.doc.get("is_multiple_answer")) or len(self.doc.get("final_answer", ())) > 1


@dataclass(frozen=True)
class Variant:
    """A response to `doc_id` of `task` whose final answer is `answer`."""

    task: str
    doc_id: int
    kind: str
    equivalent: bool  # True: the gold written another way; False: a near miss
    answer: str
    response: str


Builder = Callable[[Item, Sequence[Item], random.Random], list[str]]


@dataclass(frozen=True)
class Kind:
    name: str
    equivalent: bool
    build: Builder  # item, every item of its task, a seeded rng -> answer texts (maybe none)
    why: str


# ---------------------------------------------------------------- loading
def load_items(data_dir: str | Path, task: str) -> list[Item]:
    """Every item of `task` in a data dir laid out like ../shared/data."""
    path = Path(data_dir) / get_task(task).local_file
    docs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [Item(task, i, doc, _GOLD[task](doc), _QUESTION[task](doc)) for i, doc in enumerate(docs)]


_GOLD: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "leaf_gsm8k": lambda doc: doc["answer"].rsplit("####", 1)[1].strip().replace(",", ""),
    "leaf_math500": lambda doc: doc["answer"].strip(),
    "leaf_olympiadbench": lambda doc: ", ".join(
        a.strip().strip("$").strip() for a in doc["final_answer"]
    ).replace("$", ""),
}
_QUESTION: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "leaf_gsm8k": lambda doc: doc["question"],
    "leaf_math500": lambda doc: doc["problem"],
    "leaf_olympiadbench": lambda doc: doc["question"],
}


# ---------------------------------------------------------------- the independent parser
_INT_RE = re.compile(r"-?\d+")
_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")


@cache
def exact_value(latex: str) -> Any:
    """The value of a LaTeX number (`3`, `-.5`, `\\frac{9}{32}`, `2\\sqrt{3}`, `\\frac{\\pi}{4}`)
    as a sympy number, or None for anything else (variables, sets, text, lists)."""
    import sympy
    from sympy.parsing.sympy_parser import (
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    s = latex.strip().replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"(\d)\s*(?=\\frac\{\d+\}\{\d+\})", r"\1+", s)  # a mixed number: 1\frac{4}{5}
    s = s.replace("\\left", "").replace("\\right", "").replace("\\cdot", "*").replace("\\times", "*")
    s = re.sub(r"\\frac\{", "frac{", s).replace("\\sqrt", "sqrt").replace("\\pi", "pi")
    if re.search(r"[^0-9+\-*/^(){}. a-z]", s) or re.search(r"[a-z]+", s.replace("frac", "")
                                                          .replace("sqrt", "").replace("pi", "")):
        return None
    s = re.sub(r"frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", s)
    s = s.replace("{", "(").replace("}", ")").replace("^", "**")
    if "frac" in s:
        return None
    try:
        value = parse_expr(s, transformations=(*standard_transformations,
                                               implicit_multiplication_application),
                           local_dict={"pi": sympy.pi, "sqrt": sympy.sqrt}, evaluate=True)
    except Exception:
        return None
    return value if getattr(value, "is_number", False) and value.is_real else None


def _rational(latex: str) -> Fraction | None:
    value = exact_value(latex)
    if value is None or not value.is_rational:
        return None
    return Fraction(int(value.p), int(value.q))


def _terminating(q: Fraction) -> bool:
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _decimal(q: Fraction) -> str:
    """The exact decimal of a terminating fraction: 9/32 -> 0.28125."""
    sign = "-" if q < 0 else ""
    q = abs(q)
    whole, rest = divmod(q.numerator, q.denominator)
    digits = ""
    while rest:
        rest *= 10
        digit, rest = divmod(rest, q.denominator)
        digits += str(digit)
    return sign + str(whole) + ("." + digits if digits else "")


def _canonical(latex: str) -> str:
    """A spelling-blind form of an answer, to tell a near miss from the gold itself."""
    s = latex.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("$", "")
    return re.sub(r"\s+", "", s).lower()


def _same_answer(a: str, b: str) -> bool:
    if _canonical(a) == _canonical(b):
        return True
    va, vb = exact_value(a), exact_value(b)
    return va is not None and vb is not None and bool(abs(va - vb) < 1e-9)


def _is_number(text: str) -> bool:
    return bool(_PLAIN_NUMBER_RE.fullmatch(text.strip()))


def _top_level_split(s: str) -> list[str]:
    return [p.strip() for p in top_level_parts(s)]


def _is_list(item: Item) -> bool:
    """An unordered list answer: OlympiadBench's multi-answers, MATH's bare "a, b" answers
    (its ordered answers are always bracketed)."""
    parts = _top_level_split(item.gold)
    if len(parts) < 2 or re.fullmatch(r"\\?\$?\d{1,3}(?:,(?:\\!)?\d{3})+(?:\.\d+)?", item.gold):
        return False
    return item.multiple or item.task == "leaf_math500"


def _asks(item: Item, *words: str) -> bool:
    q = item.question.lower()
    return any(w in q for w in words)


# ---------------------------------------------------------------- equivalent forms
def _verbatim(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    return [item.gold]


def _dfrac(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    if "\\frac" not in item.gold:
        return []
    return [item.gold.replace("\\frac", rng.choice(("\\dfrac", "\\tfrac")))]


def _left_right(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    g = item.gold
    if "\\left" in g or not re.search(r"[(\[]", g) or g.count("(") != g.count(")"):
        return []
    out = re.sub(r"(?<!\\)([(\[])", r"\\left\1", g)
    return [re.sub(r"(?<!\\)([)\]])", r"\\right\1", out)]


def _spacing(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    """Spaces where LaTeX ignores them: before closing braces (`m_{\\max }`), after commas,
    around binary operators."""
    g = item.gold
    spaced = re.sub(r"(?<=[^\s{\\])\}", " }", g)
    spaced = re.sub(r",(?=\S)", ", ", spaced)
    spaced = re.sub(r"(?<=[\w}])([=+])(?=[\w\\])", r" \1 ", spaced)
    return [spaced] if spaced != g else []


def _fraction_decimal(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    """An exact decimal for a terminating fraction, the fraction for a decimal."""
    if _is_number(item.gold) and "." in item.gold:
        exact = Fraction(item.gold.strip())
        if exact.denominator == 1:
            return []
        sign = "-" if exact < 0 else ""
        return [f"{sign}\\frac{{{abs(exact.numerator)}}}{{{exact.denominator}}}"]
    q = _rational(item.gold)
    if q is None or q.denominator == 1 or not _terminating(q):
        return []
    return [_decimal(q)]


_UNIT_WORDS = ("units", "cm", "meters", "dollars", "apples", "minutes")


def _units(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    if item.multiple or exact_value(item.gold) is None or "%" in item.gold:
        return []
    unit = (item.doc.get("unit") or "").replace("$", "").strip()
    if unit in ("%", "^{\\circ}"):
        return []
    unit = unit or rng.choice(_UNIT_WORDS)
    form = rng.choice(("\\text{{ {u}}}", "\\ \\text{{{u}}}", "\\mbox{{ {u}}}"))
    if item.task == "leaf_gsm8k" and rng.random() < 0.5:
        return [f"{item.gold} {unit}"]
    return [f"{item.gold} " + form.format(u=unit)]


_DEGREE_MARKS = ("^\\circ", "^{\\circ}", "°", "\\text{ degrees}")
_DEGREE_RE = re.compile(r"\s*(?:\^\{?\\circ\}?|\\text\{\s*degrees\})$")


def _degrees(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    g = item.gold
    if item.multiple or "," in g:
        return []
    if _DEGREE_RE.search(g):
        bare = _DEGREE_RE.sub("", g)
        return [bare, bare + rng.choice(("°", "^{\\circ}"))]
    if exact_value(g) is None or not (_asks(item, "degree") or item.doc.get("unit") == "^{\\circ}"):
        return []
    return [g + rng.choice(_DEGREE_MARKS)]


def _thousands(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    g = item.gold.replace("\\$", "").replace(",\\!", "").replace(",", "")
    if item.multiple or not re.fullmatch(r"-?\d{4,}(?:\.\d+)?", g):
        return []
    sign, body = ("-", g[1:]) if g.startswith("-") else ("", g)
    whole, _, frac = body.partition(".")
    groups = [whole[max(0, i - 3):i] for i in range(len(whole), 0, -3)][::-1]
    separator = rng.choice((",", "{,}", "\\,", ",\\!"))
    if item.task == "leaf_gsm8k":
        separator = rng.choice((",", "{,}", "\\,"))
    return [sign + separator.join(groups) + (f".{frac}" if frac else "")]


def _x_equals(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    if item.multiple or "=" in item.gold or exact_value(item.gold) is None:
        return []
    return [f"{rng.choice('xyn')} = {item.gold}"]


def _reordered(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    if not _is_list(item):
        return []
    parts = _top_level_split(item.gold)
    if len({_canonical(p) for p in parts}) < len(parts):
        return []
    return [", ".join(reversed(parts))]


def _percent(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    g = item.gold
    if item.multiple:
        return []
    if re.search(r"\\?%$", g):
        return [re.sub(r"\s*\\?%$", "", g)]
    percent_item = item.doc.get("unit") == "%" or _asks(item, "percent", "%")
    if not percent_item or exact_value(g) is None:
        return []
    return [g + rng.choice(("\\%", "\\ \\%"))]


def _money(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    g = item.gold
    if g.startswith("\\$"):
        return [g[2:].strip()]
    if item.multiple or not _is_number(g) or not _asks(item, "$", "dollar"):
        return []
    if item.task == "leaf_gsm8k":
        cents = f"{Fraction(g).numerator / Fraction(g).denominator:.2f}" if "." not in g else g
        return [f"\\${g}", f"${g}", f"\\${cents}"]
    return [f"\\${g}"]


def _text_wrap(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    g = item.gold
    match = re.fullmatch(r"\\text\{\s*([A-Za-z][A-Za-z ]*)\s*\}", g)
    if match:
        return [match.group(1)]
    if item.multiple or not _is_number(g):
        return []
    return [f"\\text{{{g}}}" if rng.random() < 0.5 else f"\\mathrm{{{g}}}"]


# ---------------------------------------------------------------- near misses
def _other_gold(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    for _ in range(20):
        other = pool[rng.randrange(len(pool))]
        if other.doc_id != item.doc_id and not _same_answer(other.gold, item.gold) and not (
            _is_list(item) and sorted(map(_canonical, _top_level_split(other.gold)))
            == sorted(map(_canonical, _top_level_split(item.gold)))
        ):
            return [other.gold]
    return []


_UNIT_TAIL_RE = re.compile(r"\s*\\(?:text|mbox|mathrm)\{[^{}]*\}(?:\^\{?\d\}?)?$")


def _off_by_one(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    """The last integer of the answer (not a subscript, not a unit's power) plus one; not for
    an item whose tolerance (`error`) covers the step."""
    g = item.gold
    value_end = _UNIT_TAIL_RE.search(g)
    head = g[: value_end.start()] if value_end else g
    spans = [m for m in re.finditer(r"\d+", head)
             if not head[: m.start()].rstrip("{").endswith("_")]
    if not spans or "\\text" in head or item.doc.get("error"):
        return []
    last = spans[-1]
    return [g[: last.start()] + str(int(last.group()) + 1) + g[last.end():]]


def _sign_flip(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    g = item.gold
    value = exact_value(g)
    if value is None or value == 0 or "," in g or "\\pm" in g:
        return []
    return [g[1:].strip()] if g.startswith("-") else ["-" + g if _simple(g) else f"-({g})"]


def _simple(g: str) -> bool:
    return bool(re.fullmatch(r"[\d.]+|\\frac\{[^{}]*\}\{[^{}]*\}|\\sqrt\{\d+\}", g))


def _truncated(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    """A cut-off answer: a number missing its last digit, a list or tuple missing its last
    part."""
    g = item.gold
    if re.fullmatch(r"-?\d{2,}", g) or re.fullmatch(r"-?\d*\.\d{2,}", g):
        return [g[:-1]]
    parts = _top_level_split(g)
    if len(parts) > 1 and _is_list(item):
        return [", ".join(parts[:-1])]
    match = re.fullmatch(r"(\\left)?\((.*)(\\right)?\)", g)
    if match:
        inner = _top_level_split(g[g.index("(") + 1: g.rindex(")")].removesuffix("\\right"))
        if len(inner) > 1:
            return ["(" + ", ".join(inner[:-1]) + ")"]
    return []


def _swapped(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    g = item.gold
    if item.multiple or not (g.startswith(("(", "\\left(")) and g.endswith(")")):
        return []
    body = g.removeprefix("\\left(").removeprefix("(").removesuffix(")").removesuffix("\\right")
    parts = _top_level_split(body)
    if len(parts) < 2 or _same_answer(parts[0], parts[1]):
        return []
    parts[0], parts[1] = parts[1], parts[0]
    return ["(" + ", ".join(parts) + ")"]


_BASED_RE = re.compile(r"\{?([0-9A-Z]+)\}?_\{?(\d+)\}?")


def _wrong_base(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    """The same digits under another base, and the number's decimal value without a base."""
    match = _BASED_RE.fullmatch(item.gold)
    if not match:
        return []
    digits, base = match.group(1), int(match.group(2))
    out = [f"{digits}_{{{b}}}" if b >= 10 else f"{digits}_{b}" for b in (base + 1, base + 2)]
    if all(int(c, 36) < base - 1 for c in digits):
        out.append(f"{digits}_{base - 1}")
    value = int(digits, base)
    if str(value) != digits:
        out.append(str(value))
    return out


def _rounded(item: Item, pool: Sequence[Item], rng: random.Random) -> list[str]:
    """A rounded decimal for an exact answer (a non-terminating fraction, a surd, pi), or fewer
    digits of a decimal, where the item gives no tolerance."""
    if item.doc.get("error") or item.multiple:
        return []
    value = exact_value(item.gold)
    if value is None or value == 0:
        return []
    q = _rational(item.gold)
    if q is not None and _terminating(q) and not (_is_number(item.gold) and "." in item.gold):
        return []
    x = float(value)
    rounded = f"{x:.4f}" if abs(x) >= 0.01 else f"{x:.2g}"
    if _is_number(item.gold) and "." in item.gold:
        digits = len(item.gold.split(".")[1].lstrip("0")) if abs(x) < 1 else len(
            item.gold.replace("-", "").replace(".", "").lstrip("0"))
        if digits < 3:
            return []
        rounded = f"{x:.{max(digits - 1, 1)}g}" if abs(x) >= 1 else f"{x:.{digits - 1}g}"
        if "e" in rounded:
            rounded = f"{x:.12f}".rstrip("0")[: len(item.gold.lstrip("-")) - 1 + (x < 0)]
    if Fraction(rounded) == Fraction(str(x)) and q is not None:
        return []
    return [rounded]


# ---------------------------------------------------------------- the registry
EQUIVALENT: tuple[Kind, ...] = (
    Kind("boxed", True, _verbatim, "the gold as written, in \\boxed{}"),
    Kind("answer_is", True, _verbatim, "the gold after \"The answer is\" (GSM8K's marker)"),
    Kind("dfrac", True, _dfrac, "\\frac written \\dfrac or \\tfrac"),
    Kind("left_right", True, _left_right, "brackets written \\left( ... \\right)"),
    Kind("spacing", True, _spacing, "spaces LaTeX ignores: `m_{\\max }`, `a, b`, `x = 1`"),
    Kind("fraction_decimal", True, _fraction_decimal, "an exact decimal for a fraction or back"),
    Kind("units", True, _units, "a unit after the number, in \\text{}/\\mbox{} or plain"),
    Kind("degrees", True, _degrees, "a degree mark added (^\\circ, ^{\\circ}, °) or dropped"),
    Kind("thousands", True, _thousands, "thousands separators: 1,000  1{,}000  1\\,000"),
    Kind("x_equals", True, _x_equals, "`x = ...` around the number"),
    Kind("reordered", True, _reordered, "an unordered list in another order"),
    Kind("percent", True, _percent, "a percent sign added on a percentage question or dropped"),
    Kind("money", True, _money, "money with $ or \\$ (and cents), or the gold's \\$ dropped"),
    Kind("text_wrap", True, _text_wrap, "\\text{} around a number, or dropped around a word"),
)
NEAR_MISS: tuple[Kind, ...] = (
    Kind("other_gold", False, _other_gold, "another item's gold (a different value)"),
    Kind("off_by_one", False, _off_by_one, "the answer's last integer plus one"),
    Kind("sign_flip", False, _sign_flip, "the negated value"),
    Kind("truncated", False, _truncated, "a number missing its last digit, a list its last part"),
    Kind("swapped_tuple", False, _swapped, "an ordered tuple's first two entries swapped"),
    Kind("wrong_base", False, _wrong_base, "the digits under another base, or the decimal value"),
    Kind("rounded", False, _rounded, "a rounded decimal where the exact value is asked"),
)
KINDS: dict[str, Kind] = {kind.name: kind for kind in (*EQUIVALENT, *NEAR_MISS)}

# Kinds that do not exist for a task's answer format: the math prompts ask for a box, and the
# strict-match filter of the math tasks reads only a box ("The answer is" is flexible-extract's).
NOT_FOR_TASK = {"leaf_math500": {"answer_is"}, "leaf_olympiadbench": {"answer_is"}}

# Verdicts `strict` deliberately gets "wrong" by this suite's labels, by kind, with the reason.
# They still count in the rates. (task, doc_id, answer) -> reason.
KNOWN_EXCEPTIONS: dict[str, dict[tuple[str, int, str], str]] = {}


# ---------------------------------------------------------------- responses
def respond(item: Item, kind: str, answer: str, rng: random.Random) -> str:
    """A short worked response ending in `answer`, in the marker `kind` calls for."""
    steps = f"First, 3 + 4 = 7 and 2 \\cdot 5 = 10, as item {item.doc_id} requires.\n"
    if kind == "answer_is" or (item.task == "leaf_gsm8k" and kind != "boxed"
                               and rng.random() < 0.5):
        return f"{steps}The answer is {answer}."
    return f"{steps}So the final answer is $\\boxed{{{answer}}}$."


def generate(items: Sequence[Item], *, seed: int = SEED) -> list[Variant]:
    """Every variant of every item, in item then kind order; the same for the same seed."""
    out = []
    for item in items:
        for kind in KINDS.values():
            if kind.name in NOT_FOR_TASK.get(item.task, ()):
                continue
            rng = random.Random(f"{seed}/{item.task}/{item.doc_id}/{kind.name}")
            for answer in dict.fromkeys(kind.build(item, items, rng)):
                response = respond(item, kind.name, answer, rng)
                out.append(Variant(item.task, item.doc_id, kind.name, kind.equivalent, answer,
                                   response))
    return out


def stratified_sample(variants: Sequence[Variant], per_cell: int = 30, *,
                      seed: int = SEED) -> list[Variant]:
    """`per_cell` variants of each (task, kind), drawn with a fixed seed (all where fewer)."""
    cells: dict[tuple[str, str], list[Variant]] = {}
    for v in variants:
        cells.setdefault((v.task, v.kind), []).append(v)
    out = []
    for key in sorted(cells):
        cell = cells[key]
        rng = random.Random(f"{seed}/{key[0]}/{key[1]}")
        out.extend(cell if len(cell) <= per_cell else rng.sample(cell, per_cell))
    return out


# ---------------------------------------------------------------- judging
@dataclass(frozen=True)
class Judged:
    variant: Variant
    mode: str
    accepted: bool

    @property
    def right(self) -> bool:
        """Whether the grader's verdict is the one the variant was built to get."""
        return self.accepted == self.variant.equivalent


def judge(variants: Iterable[Variant], docs: Mapping[tuple[str, int], Mapping[str, Any]],
          mode: str, filter_name: str = FILTERS[0]) -> list[Judged]:
    """Each variant's verdict under grading `mode`, as a run's `filter_name` gives it."""
    grader = get_grader(mode)
    return [Judged(v, mode, grader.verdict(v.task, docs[(v.task, v.doc_id)], v.response,
                                           filter_name))
            for v in variants]


@dataclass(frozen=True)
class Cell:
    task: str
    kind: str
    equivalent: bool
    n: int
    accepted: int

    @property
    def rate(self) -> float:
        return self.accepted / self.n if self.n else float("nan")


def acceptance(judged: Iterable[Judged]) -> dict[tuple[str, str], Cell]:
    """Accepted count per (task, kind)."""
    counts: dict[tuple[str, str], list[int]] = {}
    for j in judged:
        c = counts.setdefault((j.variant.task, j.variant.kind), [0, 0])
        c[0] += 1
        c[1] += j.accepted
    return {key: Cell(key[0], key[1], KINDS[key[1]].equivalent, n, a)
            for key, (n, a) in counts.items()}


def rates(judged: Sequence[Judged]) -> dict[str, float]:
    """Share of equivalent forms accepted and of near misses accepted, over `judged`."""
    eq = [j.accepted for j in judged if j.variant.equivalent]
    miss = [j.accepted for j in judged if not j.variant.equivalent]
    return {"equivalent_accepted": sum(eq) / len(eq) if eq else float("nan"),
            "near_miss_accepted": sum(miss) / len(miss) if miss else float("nan"),
            "n_equivalent": len(eq), "n_near_miss": len(miss)}


def docs_of(items: Iterable[Item]) -> dict[tuple[str, int], Mapping[str, Any]]:
    return {(i.task, i.doc_id): i.doc for i in items}


def format_table(cells_by_mode: Mapping[str, Mapping[tuple[str, str], Cell]]) -> str:
    """Acceptance per kind (rows) and task (columns), one column group per mode."""
    modes = list(cells_by_mode)
    header = ["kind", "expect"] + [f"{t.removeprefix('leaf_')} {m}" for m in modes for t in TASKS]
    rows = [header]
    for kind in KINDS.values():
        row = [kind.name, "accept" if kind.equivalent else "reject"]
        for m in modes:
            for t in TASKS:
                cell = cells_by_mode[m].get((t, kind.name))
                row.append(f"{cell.accepted}/{cell.n} {100 * cell.rate:.1f}%" if cell else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
