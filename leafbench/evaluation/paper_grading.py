r"""Scoring as the Qwen2.5-Math evaluation toolkit does: the `paper` grading mode.

The LeaF paper's math numbers come from the Qwen2.5-Math toolkit (its prompt is the one our math
tasks use). That toolkit is lenient where leafbench's `strict` mode is not: it accepts a decimal
within a relative 1e-4 of the gold ("4.6667" for 14/3), a share written as a fraction or a
percentage either way, and it strips unit words. To compare reproduced numbers with published
ones, this module re-implements the toolkit's *observable* rules, written for leafbench from a
reading of its behaviour (no code taken): the same responses should get the same verdicts.

**Extraction** (`extract_answer`), first rule that applies:

1. "final answer is $X$. I hope" (the Minerva format): X.
2. the word "boxed" anywhere: what follows its *last* occurrence: the balanced `{...}` content
   (to the end of the text if unclosed), or, without a brace, the text up to the next `$`.
3. "he answer is": everything after its last occurrence ("The answer is 18." -> "18").
4. "final answer is": everything after its last occurrence.
5. else the last number (`-?\d*\.?\d+`) of the response with every comma removed; none: "".

Then line breaks (and the indentation after them) are dropped, a leading ":" and a trailing
"." or "/" go, and the result is normalised like the gold. (The toolkit's Chinese-marker rule and
multiple-choice datasets do not apply to leafbench's tasks and are left out.)

**Normalisation** (`normalize`), in order: strip, drop line breaks and trailing periods, drop
`\!`; `array`/`bmatrix` become `pmatrix`; `\tfrac`/`\dfrac` become `\frac`; `\neq`/`\leq`/`\geq`
become `\ne`/`\le`/`\ge`; `\left`/`\right` go, `\{`/`\}` become braces; a trailing `\text{...}`
goes when something remains; **unit words** (`UNIT_WORDS`, with plurals) are removed wherever
they stand as whole words (bounded by a non-word character or an end), in two passes, unless
that would empty the string; degree marks, `$` and `\$`, `\(`/`\)` go; a string that is only
English number words becomes its number ("twelve" -> "12"); `\text{X}` becomes X; the prefixes
"x=", "y=", "z=" and "x\in", "x\to" (and for y, z) go; `\emptyset` becomes `{}` and
`(-\infty,\infty)` becomes `\mathbb{R}`; percent signs go (`\%`, `%`); " ." and "{." gain a 0;
"infinity" (or a lone "inf") becomes `\infty`; the letters "and" and `\mathbf` go, as does
`\mbox{...}`; "j" becomes "i" when there is no "i"; trailing zero decimals go ("18.00" -> "18");
a leading "." gains a 0; "k = 5" (a left side of at most two characters) keeps only "5";
`\sqrtN` gains braces; every space goes; `\frac12` becomes `\frac{1}{2}`; an integer "a/b"
becomes `\frac{a}{b}`.

**Equality** (`answers_equal(prediction, gold)`), first rule that decides:

1. equal strings, ignoring case: right.
2. a gold that is one of the letters A-E: right if the prediction's last standalone A-E is it.
3. both numbers (commas removed; "x%" reads as x/100): right iff the prediction is within a
   relative 1e-4 of the gold, of gold/100 or of gold*100 ("percentages retried x100 and /100");
   wrong otherwise, with no symbolic attempt.
4. an empty prediction: wrong.
5. the same strings once brackets and braces are removed (ignoring case; a prediction in `[...]`
   against a gold not starting "(" or in `(...)` against one not starting "[" loses its outer
   brackets first, so `(1,2)` equals `[1,2]` but the interval ends still differ).
6. both bracketed: split inside the brackets at every comma; same count and each part equal
   **in order** (rule set applied recursively): right. Lists are ordered.
7. both `pmatrix`: same shape and every entry equal (recursively): right.
8. equations: both with one "=": right if `lhs - (rhs)` of the two are symbolically equal up to
   sign; one side only with one "=" and a left side of at most two characters: its right side
   is compared with the other.
9. symbolic: both parsed to sympy (here by math_verify's LaTeX parser, then sympy's plain
   parser; the toolkit uses its own latex2sympy, so rare expressions may parse differently):
   same printed form, `equals` or `simplify(a - b) == 0`; for two equations the absolute
   differences of their sides are equal; numeric values within a relative 1e-4; matrices
   equal entry-wise after rounding to 3 decimals. Each symbolic check is cut off after
   `SYMBOLIC_TIMEOUT_S` seconds (the toolkit waits 3 s per item): then the verdict is wrong.

**Golds** (`gold_answer`): GSM8K the text after "####"; MATH-500 `answer`; OlympiadBench the
*first* element of `final_answer` with `$` stripped (multi-answer flags, units and tolerances are
ignored), each normalised as above.

`UNIT_WORDS` is leafbench's own vocabulary of the kinds of word the toolkit strips: measurement
and currency units, time, counting nouns, compass directions, and single letters that are units
(m, g, s, l, t, h, d, c, a, o); like the toolkit's, it also strips those letters where they are
variables ("a+b" becomes "+b" on both sides). It matches the toolkit's on every unit that the
three benchmarks' golds and the variant suite use; a rare word outside it may be judged
differently.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any

SYMBOLIC_TIMEOUT_S = 3
RELATIVE_TOLERANCE = 1e-4

_BASE_UNITS = (
    # length, area, volume, mass
    "m", "cm", "mm", "km", "dm", "ft", "feet", "foot", "inch", "inches", "yard", "mile", "metre",
    "meter", "mtr", "mt", "sq", "square", "cubic", "cube", "cc", "acre", "hectare", "sq m",
    "sq inch", "cm 2", "cu cm", "gm", "g", "kg", "lb", "l", "lt", "liter", "litre", "gal",
    "gallon",
    # time and speed
    "s", "sec", "second", "min", "minute", "hr", "hour", "day", "month", "yr", "year", "am",
    "pm", "noon", "mph", "kmph", "kmh", "mp",
    # money and trade
    "rs", "rupee", "profit", "loss", "gain", "mark", "coin", "increase", "decrease", "excess",
    "more", "less", "percent", "per", "ratio", "by",
    # counting nouns and directions
    "unit", "number", "man", "men", "woman", "women", "soldier", "apple", "toy", "tile", "pie",
    "monkey", "round", "way", "east", "west", "degree", "deg", "ohm", "prime", "pure", "rise",
    "are", "th", "st", "rd", "bc", "ab",
    # single letters
    "a", "c", "d", "h", "o", "t",
)
# Each word and its plural ("s" added), longest first so "cm" goes before "m" would.
UNIT_WORDS = tuple(sorted({w for u in _BASE_UNITS for w in (u, u + "s")}, key=len, reverse=True))
_UNIT_RES = tuple(re.compile(rf"(^|\W){re.escape(w)}($|\W)") for w in UNIT_WORDS)

_NUMBER_WORDS = {
    w: i for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split())
} | {w: 10 * (i + 2) for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_LAST_NUMBER_RE = re.compile(r"-?\d*\.?\d+")


# ---------------------------------------------------------------- extraction
def extract_answer(response: str) -> str:
    """The toolkit's answer of `response`, normalised (module docstring, "Extraction")."""
    text = (response or "").replace("\u043a\u0438", "")
    answer = _raw_answer(text)
    answer = re.sub(r"\n\s*", "", answer)
    answer = answer.removeprefix(":")
    answer = answer.removesuffix(".").removesuffix("/")
    return normalize(answer)


def _raw_answer(text: str) -> str:
    if "final answer is $" in text and "$. I hope" in text:
        return text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    if "boxed" in text:
        return _after_boxed(text.rsplit("boxed", 1)[1])
    for marker in ("he answer is", "final answer is"):
        if marker in text:
            return text.rsplit(marker, 1)[1].strip()
    numbers = _LAST_NUMBER_RE.findall(text.replace(",", ""))
    return numbers[-1] if numbers else ""


def _after_boxed(tail: str) -> str:
    if not tail.startswith("{"):
        return tail.split("$", 1)[0].strip()
    depth = 1
    for i, ch in enumerate(tail[1:], start=1):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            return tail[1:i]
    return tail[1:]


def gold_answer(task: str, doc: dict[str, Any]) -> str:
    """The toolkit's gold for a doc of a leafbench task (module docstring, "Golds")."""
    return normalize(_GOLD_FIELDS[task](doc))


_GOLD_FIELDS = {
    "leaf_gsm8k": lambda doc: doc["answer"].split("####")[-1],
    "leaf_math500": lambda doc: doc["answer"],
    "leaf_olympiadbench": lambda doc: doc["final_answer"][0].strip("$"),
}


# ---------------------------------------------------------------- normalisation
def normalize(text: str) -> str:
    """The toolkit's clean-up of an answer or a gold (module docstring, "Normalisation")."""
    s = str(text).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    s = _unless_empty(re.sub(r"\\text\{.*?\}$", "", s).strip(), s)
    for _ in range(2):
        for unit in _UNIT_RES:
            s = _unless_empty(unit.sub(r"\1\2", s), s)
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = _number_words(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for var in "xyz":
        for joint in ("=", "\\in", "\\to"):
            s = s.replace(var + joint, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox\{.*?\}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s.startswith("."):
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s).replace(" ", "")
    return _slash_fraction(_brace_fracs(s))


def _unless_empty(new: str, old: str) -> str:
    return new if new != "" else old


def _number_words(s: str) -> str:
    """A string made only of English number words, as its number; anything else unchanged."""
    words = [w for w in re.split(r"[\s-]+", s.lower().strip()) if w and w != "and"]
    if not words or not all(w in _NUMBER_WORDS or w in _SCALES for w in words):
        return s
    total = current = 0
    for w in words:
        if w in _NUMBER_WORDS:
            current += _NUMBER_WORDS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        else:
            total += max(current, 1) * _SCALES[w]
            current = 0
    return str(total + current)


def _brace_fracs(s: str) -> str:
    r"""`\frac12` -> `\frac{1}{2}`, `\frac1{2}` -> `\frac{1}{2}`."""
    head, *rest = s.split("\\frac")
    out = [head]
    for part in rest:
        if part.startswith("{") or not part:
            out.append(part)
        elif len(part) < 2:
            return s
        elif part[1] == "{":
            out.append("{" + part[0] + "}" + part[1:])
        else:
            out.append("{" + part[0] + "}{" + part[1] + "}" + part[2:])
    return "\\frac".join(out)


def _slash_fraction(s: str) -> str:
    match = re.fullmatch(r"(-?\d+)/(-?\d+)", s)
    return f"\\frac{{{match.group(1)}}}{{{match.group(2)}}}" if match else s


# ---------------------------------------------------------------- equality
@functools.lru_cache(maxsize=65536)
def answers_equal(prediction: str, gold: str) -> bool:
    """Whether the normalised `prediction` matches the normalised `gold` (module docstring)."""
    pred, ref = prediction.strip(), gold.strip()
    if pred.lower() == ref.lower():
        return True
    if ref in ("A", "B", "C", "D", "E"):
        letters = re.findall(r"\b([A-E])\b", pred.upper())
        if letters and letters[-1] == ref:
            return True
    pred_value, ref_value = _number(pred), _number(ref)
    if pred_value is not None and ref_value is not None:
        return any(_close(pred_value, ref_value * k) for k in (0.01, 1, 100))
    if not pred:
        return False
    return _structural_equal(pred, ref) or _symbolic_equal(pred, ref)


def _number(s: str) -> float | None:
    s = s.replace(",", "")
    scale = 1.0
    if s.endswith("%"):
        s, scale = s[:-1].removesuffix("\\"), 0.01
    try:
        value = float(s) * scale
    except ValueError:
        return None
    return value if s.strip() and math.isfinite(value) else None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE)


def _structural_equal(pred: str, ref: str) -> bool:
    """Rules 5-8: bracket-blind text, ordered parts, matrices, equations."""
    p, r = pred, ref
    if (p.startswith("[") and p.endswith("]") and not ref.startswith("(")) or (
        p.startswith("(") and p.endswith(")") and not ref.startswith("[")
    ):
        p, r = p.strip("[]()"), r.strip("[]()")
    if _unbracketed(p).lower() == _unbracketed(r).lower():
        return True
    bracketed = re.compile(r"[(\[].+[)\]]")
    if bracketed.match(pred) and bracketed.match(ref):
        pred_parts, ref_parts = pred[1:-1].split(","), ref[1:-1].split(",")
        if len(pred_parts) == len(ref_parts) and all(
            answers_equal(a, b) for a, b in zip(pred_parts, ref_parts, strict=True)
        ):
            return True
    if _matrix_equal(pred, ref):
        return True
    return _equation_equal(pred, ref)


def _unbracketed(s: str) -> str:
    return re.sub(r"[{}()]", "", s)


def _matrix_equal(pred: str, ref: str) -> bool:
    rows = [_matrix_rows(s) for s in (pred, ref)]
    if rows[0] is None or rows[1] is None or len(rows[0]) != len(rows[1]):
        return False
    return all(
        len(a) == len(b) and all(answers_equal(x, y) for x, y in zip(a, b, strict=True))
        for a, b in zip(rows[0], rows[1], strict=True)
    )


def _matrix_rows(s: str) -> list[list[str]] | None:
    match = re.fullmatch(r"\\begin\{pmatrix\}(.*)\\end\{pmatrix\}", s)
    if not match:
        return None
    return [row.split("&") for row in match.group(1).split("\\\\") if row.strip()]


def _equation_equal(pred: str, ref: str) -> bool:
    if pred.count("=") == 1 and ref.count("=") == 1:
        a, b = (f"{x.split('=')[0].strip()} - ({x.split('=')[1].strip()})" for x in (pred, ref))
        return _symbolic_equal(a, b) or _symbolic_equal(f"-({a})", b)
    if pred.count("=") == 1 and len(pred.split("=")[0].strip()) <= 2 and "=" not in ref:
        return answers_equal(normalize(pred.split("=")[1]), ref)
    if ref.count("=") == 1 and len(ref.split("=")[0].strip()) <= 2 and "=" not in pred:
        return answers_equal(pred, normalize(ref.split("=")[1]))
    return False


# ---------------------------------------------------------------- symbolic
def _symbolic_equal(pred: str, ref: str) -> bool:
    """Rule 9, each check within the timeout."""
    try:
        a, b = _sympy(pred), _sympy(ref)
    except Exception:  # a parser failing in an unforeseen way: no symbolic verdict
        return False
    checks = (_same_form, _simplify_equal, _equation_sides_equal, _numerically_close,
              _matrices_close)
    for check in checks:
        try:
            with _time_limit(SYMBOLIC_TIMEOUT_S):
                if check(a, b):
                    return True
        except Exception:  # unparsed strings, incomparable types, timeouts: not this rule
            continue
    return False


def _same_form(a: Any, b: Any) -> bool:
    return bool(str(a) == str(b) or a == b)


def _simplify_equal(a: Any, b: Any) -> bool:
    from sympy import simplify

    return bool(a.equals(b) or simplify(a - b) == 0)


def _equation_sides_equal(a: Any, b: Any) -> bool:
    return bool(abs(a.lhs - a.rhs).equals(abs(b.lhs - b.rhs)))


def _numerically_close(a: Any, b: Any) -> bool:
    from sympy import N

    return _close(float(N(a)), float(N(b)))


def _matrices_close(a: Any, b: Any) -> bool:
    if a.shape != b.shape:
        return False
    return bool(a.applyfunc(lambda x: round(x, 3)).equals(b.applyfunc(lambda x: round(x, 3))))


@functools.lru_cache(maxsize=65536)
def _sympy(text: str) -> Any:
    """`text` as a sympy object: LaTeX first (math_verify's parser), then a plain expression;
    the string itself when neither parses. Comma-separated parts become an ordered tuple (the
    toolkit's parsers read "1,-1" as a tuple, not a set)."""
    from math_verify import LatexExtractionConfig, parse
    from sympy import Tuple
    from sympy.parsing.sympy_parser import parse_expr

    parts = top_level_parts(text)
    if len(parts) > 1:
        parsed = [_sympy(p) for p in parts]
        return text if any(isinstance(p, str) for p in parsed) else Tuple(*parsed)

    in_main = threading.current_thread() is threading.main_thread()
    for candidate in (text.replace("\\\\", "\\"), text):
        try:
            parsed = parse("$" + candidate + "$", extraction_config=[LatexExtractionConfig()],
                           parsing_timeout=SYMBOLIC_TIMEOUT_S if in_main else None)
        except Exception:
            parsed = []
        if parsed and not isinstance(parsed[0], str):
            return parsed[0]
    try:
        with _time_limit(SYMBOLIC_TIMEOUT_S):
            return parse_expr(text)
    except Exception:
        return text


def top_level_parts(text: str) -> list[str]:
    """`text` split at the commas outside any brackets (the items of a list answer)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    """Raise TimeoutError after `seconds` (SIGALRM: main thread only; elsewhere no limit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expire(signum: int, frame: Any) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
