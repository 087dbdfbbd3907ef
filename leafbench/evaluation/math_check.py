r"""Answer checking for the competition-math tasks (MATH-500, OlympiadBench).

The rules, in the order they are applied:

1. **Extraction.** The model's answer is the content of its *last* complete `\boxed{...}` (or
   `\fbox{...}`), braces matched, so `\boxed{\frac{1}{2}}` gives `\frac{1}{2}`. The prompt asks
   for a box, and a model that boxes twice is judged on its final statement, as in the
   Qwen2.5-Math evaluation harness (the usual one for these benchmarks). No box, no answer:
   that response is wrong (`extract_boxed`, the `strict-match` filter). The `flexible-extract`
   filter (`extract_boxed_or_math`) falls back, for responses without a box, to the last
   inline math span (`$...$`, `\(...\)`, `\[...\]`), else the last number: it forgives a model
   that answers but forgets the box, and is identical to strict whenever a box exists.
2. **Clean-up** of both answer and gold, the same on each side so that notation never decides:
   surrounding `$`/`\$` and whitespace, a trailing period; white space that carries no meaning
   (`m_{\max }` is `m_{\max}`: spaces next to braces and operators go, a space between two
   letters stays); `\!`, `{,}` and thin spaces inside thousands groups (`32,\!348`,
   `1\,000`); a trailing percent sign (`17.5\%` is 17.5: a percentage question's gold may
   carry the sign or not, the item's `unit` field does not say which); a trailing degree mark
   (`^\circ`, `^{\circ}`, `°`, `\text{ degrees}`); a trailing unit in `\text{}`/`\mbox{}`/
   `\mathrm{}` or a plain unit word after a number (`5.4 \text{ cents}`, `45 minutes`); and
   the item's own unit when the data names one (OlympiadBench `unit`: "km", "%", ...).
   The graders ignore units; a number and its unit never change a verdict.
3. **Equivalence.** Identical cleaned strings are equal. A gold written in a base other than
   ten (`52_8`, `4210_{5}`) is equal only to the same digits, with the same base subscript or
   none (the question names the base): `52_9` and the decimal value `42` are wrong. Otherwise
   both sides are parsed with `math_verify.parse` (LaTeX first, then plain expressions) and
   compared with `math_verify.verify(gold, answer)`: symbolic equality, sets, intervals
   (open/closed ends matter), tuples, and "x = 5" against "5"; numbers are compared to 14
   decimal places (math_verify rounds to 6 by default, which accepts `.000067` for
   `.0000672`): a rounded value is not the exact one unless the item's `error` allows it.
4. **Multiple answers** (OlympiadBench `is_multiple_answer`): gold and answer are split at
   top-level commas (commas inside brackets, as in tuples and intervals, do not split; an
   answer wrapped in `\{...\}` is unwrapped first). The answer must have exactly as many parts
   as the gold, and every gold part must be matched by a different answer part, in any order:
   all parts right, none missing, none extra. (So "2,400, 864" is three parts here: multi-answer
   golds are written without thousands separators, and answers must be too.)
5. **Numeric tolerance** (OlympiadBench `error`, e.g. "1e-1"): when set, an answer part that
   evaluates to a real number within that absolute distance of the gold part's value is also
   right. `error` may list one tolerance per part ("1e-1,1e-2"); a single one applies to all.

math_verify guards every parse and comparison with a 5 s timeout built on SIGALRM, which
Python allows only in the main thread; lm-eval scores in the main thread. Called from another
thread, the checker turns the timeout off instead of failing (and a pathological expression
could then take long). Verdicts are cached per (answer, gold, rules): lm-eval scores every
response once per filter, and strict and flexible usually extract the same string.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from leafbench.evaluation.answers import NUMBER_RE

TIMEOUT_S = 5
# Decimal places numbers are compared to: exact for anything a model writes out (rule 3).
FLOAT_DECIMALS = 14
# A number written in another base, `52_8` or `{4210}_{5}`: its digits and base.
_BASED_RE = re.compile(r"\{?([0-9A-Za-z]+)\}?_\{?(\d+)\}?")

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# Inline math: $$...$$, $...$ (not an escaped \$), \(...\), \[...\].
_MATH_SPAN_RE = re.compile(
    r"\$\$(.+?)\$\$|(?<!\\)\$(.+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL
)
# The ways a response may write a unit the data names; the key is the data's spelling.
_UNIT_ALIASES = {"%": ("\\%", "%"), "^{\\circ}": ("^{\\circ}", "^\\circ", "°")}
_OPEN, _CLOSE = "([{", ")]}"

# LaTeX anywhere in the string (it is wrapped in \boxed{} first, so the whole of it is the
# target), then plain expressions such as "1/2".
_PARSE_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


# ---------------------------------------------------------------- extraction
def boxed_contents(text: str) -> list[str]:
    """The contents of every complete `\\boxed{...}` / `\\fbox{...}` in `text`, in order."""
    found = []
    for match in _BOX_RE.finditer(text or ""):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found.append(text[start:i])
                break
    return found


def extract_boxed(response: str) -> str | None:
    """Strict extraction: the last complete box's content, or None (see rule 1)."""
    boxes = boxed_contents(response)
    return boxes[-1].strip() if boxes else None


def extract_boxed_or_math(response: str) -> str | None:
    """Flexible extraction: the last box, else the last inline math span, else the last number."""
    boxed = extract_boxed(response)
    if boxed is not None:
        return boxed
    spans = [next(g for g in m.groups() if g) for m in _MATH_SPAN_RE.finditer(response or "")]
    spans = [s.strip() for s in spans if s.strip()]
    if spans:
        return spans[-1]
    numbers = NUMBER_RE.findall(response or "")
    return numbers[-1] if numbers else None


# ---------------------------------------------------------------- clean-up and splitting
# Each clean-up step as (pattern, replacement), applied in order by `clean_answer`.
_NUMBERISH = r"-?[\d.,]*\d"
_CLEANUPS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"\\!", ""),  # negative thin space: 32,\!348
        (r"\{,\}", ","),  # 1{,}000
        (r"(?<=\d)(?:\\[,;: ]|~)(?=\d{3}(?!\d))", ""),  # 1\,000
        (r"\\[,;: ]", " "),  # other spacing commands are spaces
        (r"\s+", " "),
        # Space carries meaning only between two letters (`\max x`); elsewhere it goes.
        (r"(?<![A-Za-z]) | (?![A-Za-z])", ""),
        (r"(?:\\%|%|\\text\{percent\})$", ""),
        (r"(?:\^\{?\\circ\}?|°|\\degree|\\text\{degrees?\})$", ""),
        # A number wrapped in text: \text{9.5}, \mathrm{18}.
        (rf"^\\(?:text|mathrm|textbf|mbox)\{{({_NUMBERISH})\}}$", r"\1"),
        # A trailing unit after a number: \text{ cm}, \mathrm{km}^2, " minutes".
        (rf"^({_NUMBERISH}|.*\d\}}?)\\(?:text|mbox|mathrm)\{{[A-Za-z][A-Za-z./ ]*\}}(?:\^\{{?\d\}}?)?$",
         r"\1"),
        (rf"^({_NUMBERISH}) ?[A-Za-z]{{2,}}(?:\^\d)?$", r"\1"),
    )
)


def clean_answer(answer: str, unit: str | None = None) -> str:
    """Rule 2: the same clean-up of both sides, so that notation never decides a verdict."""
    s = answer.replace("\\$", "").replace("$", "").strip()
    s = s.rstrip(".").strip()
    if unit:
        s = _strip_unit(s, unit)
    for pattern, replacement in _CLEANUPS:
        s = pattern.sub(replacement, s).strip()
    return s.rstrip(".") or answer.strip()


def _strip_unit(s: str, unit: str) -> str:
    unit = unit.replace("$", "").strip()
    spellings = _UNIT_ALIASES.get(unit, (unit,))
    alternatives = "|".join(re.escape(u) for u in spellings)
    pattern = (
        rf"(?:\\[,;: ]|\s)*(?:\\(?:text|mathrm|mbox)\{{\s*(?:{alternatives})\s*\}}|{alternatives})$"
    )
    return re.sub(pattern, "", s).strip() or s


def split_answers(answer: str) -> list[str]:
    """Rule 4: split at commas outside any bracket; unwrap one enclosing `\\{...\\}` first."""
    s = answer.strip()
    if s.startswith("\\{") and s.endswith("\\}"):
        s = s[2:-2]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_tolerance(error: str | float | None) -> tuple[float, ...] | None:
    """OlympiadBench's `error` field ("1e-1", "1e-1,1e-2", None) as floats."""
    if error is None or (isinstance(error, str) and not error.strip()):
        return None
    if isinstance(error, (int, float)):
        return (float(error),)
    return tuple(float(e) for e in str(error).split(",") if e.strip())


# ---------------------------------------------------------------- equivalence
def is_equivalent(
    answer: str | None,
    gold: str,
    *,
    multiple: bool = False,
    tolerance: Sequence[float] | float | None = None,
    unit: str | None = None,
) -> bool:
    """Whether the extracted `answer` matches `gold` under the module's rules 2-5."""
    if answer is None:
        return False
    if isinstance(tolerance, (int, float)):
        tolerance = (float(tolerance),)
    return _judge(answer, gold, multiple, tuple(tolerance) if tolerance else None, unit)


@functools.lru_cache(maxsize=65536)
def _judge(
    answer: str, gold: str, multiple: bool, tolerance: tuple[float, ...] | None, unit: str | None
) -> bool:
    answer, gold = clean_answer(answer, unit), clean_answer(gold, unit)
    if not answer:
        return False
    if not multiple:
        tol = tolerance[0] if tolerance else None
        return _part_equal(answer, gold, tol)
    golds, answers = split_answers(gold), split_answers(answer)
    if len(answers) != len(golds):
        return False
    tolerances = tolerance if tolerance and len(tolerance) == len(golds) else None
    unused = list(answers)
    for i, g in enumerate(clean_answer(g, unit) for g in golds):
        tol = tolerances[i] if tolerances else (tolerance[0] if tolerance else None)
        hit = next((a for a in unused if _part_equal(clean_answer(a, unit), g, tol)), None)
        if hit is None:
            return False
        unused.remove(hit)
    return True


def _part_equal(answer: str, gold: str, tolerance: float | None) -> bool:
    if answer == gold:
        return True
    based = _base_number(gold)
    if based is not None:
        return _same_base_number(answer, based)
    gold_parsed, answer_parsed = _parse(gold), _parse(answer)
    if not gold_parsed or not answer_parsed:
        return False
    if verify(list(gold_parsed), list(answer_parsed), float_rounding=FLOAT_DECIMALS,
              timeout_seconds=_timeout()):
        return True
    if tolerance is None:
        return False
    g, a = _real_value(gold_parsed), _real_value(answer_parsed)
    return g is not None and a is not None and abs(a - g) <= tolerance * (1 + 1e-9)


def _base_number(text: str) -> tuple[str, int] | None:
    """(digits, base) when `text` is a number in a base from 2 to 36 other than ten."""
    match = _BASED_RE.fullmatch(text)
    if not match:
        return None
    digits, base = match.group(1).upper(), int(match.group(2))
    valid = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:base] if 2 <= base <= 36 else ""
    if base == 10 or not valid or not any(c.isdigit() for c in digits):
        return None
    return (digits, base) if all(c in valid for c in digits) else None


def _same_base_number(answer: str, gold: tuple[str, int]) -> bool:
    """Rule 3's base rule: the gold's digits, with its base subscript or without one."""
    if answer.upper().lstrip("0") == gold[0].lstrip("0"):
        return True
    match = _BASED_RE.fullmatch(answer)
    if match is None:
        return False
    return (match.group(1).upper().lstrip("0"), int(match.group(2))) == (
        gold[0].lstrip("0"), gold[1])


@functools.lru_cache(maxsize=65536)
def _parse(latex: str) -> tuple:
    """math_verify's parse of one answer string (a tuple, so the cache can hand it out)."""
    return tuple(
        parse("\\boxed{" + latex + "}", extraction_config=_PARSE_CONFIG, parsing_timeout=_timeout())
    )


def _real_value(parsed: tuple) -> float | None:
    """The parsed answer as a float, if it is a real number; else None."""
    for expr in parsed:
        if isinstance(expr, str):
            continue
        try:
            value = complex(expr.doit().evalf())
        except Exception:  # sets, symbols, matrices: not a number
            continue
        if value.imag == 0:
            return value.real
    return None


def _timeout() -> int | None:
    """math_verify's SIGALRM timeout works in the main thread only; elsewhere, none."""
    return TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
