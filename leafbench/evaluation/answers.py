r"""Final-answer extraction and number normalisation, shared by every numeric task.

Two extractors, reported side by side as lm-eval filters:

- **strict** (`strict-match`): the number right after an explicit answer marker: "The answer
  is N" (the synthetic test set's format, and what our GSM8K prompt asks for), "#### N"
  (GSM8K's gold format) or "\boxed{N}" (what math-tuned models write unprompted). If a
  response states several, the last marker wins: a model that corrects itself ("... The answer
  is 4. Wait, the answer is 5.") is judged on its final statement. No marker, no answer: strict
  also measures whether the model follows the answer format. What follows the marker is read
  as plain text first (`latex_to_plain`): `\\boxed{\\$18}`, "The answer is \\$18." and
  `\\boxed{1{,}000}` state 18, 18 and 1000 (models trained on LaTeX escape every dollar).
- **flexible** (`flexible-extract`): the *last* number anywhere in the response, marker or not.
  Chain-of-thought responses put their conclusion at the end; earlier numbers are operands,
  distractors quoted from the question, or intermediate results, so the last number is the
  best guess at what the model concluded. It is also what lm-eval's own GSM8K flexible filter
  takes, which keeps our numbers comparable with published ones. Flexible forgives a missing
  marker; it is stricter than strict only when numbers follow the marked answer.

Both go through `normalize_number`, so "$1,000.00", "1000." and "1000" all compare equal: gold
answers and model answers are normalised the same way and compared as strings.
"""

from __future__ import annotations

import re

# A number as written in prose: optional sign and "$", thousands groups "1,234,567" (only
# well-formed groups, so the list "3,4" is two numbers), optional decimals.
_NUMBER = r"-?(?:\$\s?)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
NUMBER_RE = re.compile(_NUMBER)

# Markers after which a model (or a GSM8K rationale) states its final answer: the phrase our
# prompts ask for, GSM8K's own "####", and the \boxed{} that math-tuned models write anyway.
ANSWER_MARKERS = (r"the\s+(?:final\s+)?answer\s+is\s*:?", r"####", r"\\boxed\s*\{")
MARKER_RE = re.compile("|".join(ANSWER_MARKERS), re.IGNORECASE)
# How far past a prose marker the answer may start ("The answer is: $\boxed{\$1{,}000}$.").
_REGION_CHARS = 80
# A stated answer, once its LaTeX is reduced to plain text: an optional "x =" then the number.
_STATED_RE = re.compile(rf"\s*(?:[A-Za-z]\w*\s*=\s*)?({_NUMBER})")
# LaTeX that only dresses a number: wrappers whose content is the text (\text{18} -> 18), spacing
# commands, the escaped dollar and percent models trained on LaTeX write for money and shares.
_WRAPPER_RE = re.compile(r"\\(?:boxed|text|textbf|mathrm|mathbf|mbox|fbox)\s*\{")
_LATEX_PLAIN = (("{,}", ","), ("\\$", "$"), ("\\%", "%"), ("\\!", ""))
_DIGIT_SPACE_RE = re.compile(r"(?<=\d)(?:\\[,;: ]|~)(?=\d{3})")

# What an lm-eval filter emits for a response without an answer (lm-eval's own convention);
# never equal to a normalised gold.
NO_ANSWER = "[invalid]"

# What may surround a number and carries no meaning: sentence punctuation, brackets, quotes,
# markdown emphasis, currency, units written as symbols.
_SURROUNDING = " \t\n\r.,;:!?()[]{}<>\"'`*_$%"


def normalize_number(text: str | None) -> str | None:
    """Canonical string form of a number, or None if `text` holds no number.

    Strips surrounding punctuation, `$`, thousands commas, a leading `+`, and zeros after the
    decimal point ("18.00" -> "18", "0.50" -> "0.5"); "-0" becomes "0". Nothing is rounded,
    so "0.333" and "0.33" stay different.
    """
    if text is None:
        return None
    # A leading "." may be a decimal point (".5"), so only the right side loses dots.
    s = text.strip().lstrip(_SURROUNDING.replace(".", "")).rstrip(_SURROUNDING)
    s = s.replace("$", "").replace(" ", "").removeprefix("+")
    if "," in s:
        if not re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d*)?", s):
            return None  # "1,2" is a list or a decimal comma, not a thousands separator
        s = s.replace(",", "")
    if not re.fullmatch(r"-?(?:\d+(?:\.\d*)?|\.\d+)", s):
        return None
    sign = "-" if s.startswith("-") else ""
    whole, _, frac = s.lstrip("-").partition(".")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    body = f"{whole}.{frac}" if frac else whole
    return body if body == "0" else sign + body


def extract_strict(response: str) -> str | None:
    """The number stated after the last answer marker that states one, normalised.

    The text after each marker (a box's whole content, or what follows "The answer is" /
    "####" on its line) is reduced to plain text first (`latex_to_plain`), so `\\boxed{\\$18}`,
    "The answer is \\$1{,}000." and `\\boxed{x = 18 \\text{ apples}}` state 18, 1000 and 18:
    the same number in the notation models trained on LaTeX write.
    """
    text = response or ""
    for marker in reversed(list(MARKER_RE.finditer(text))):
        match = _STATED_RE.match(latex_to_plain(_region(text, marker)))
        if match:
            return normalize_number(match.group(1))
    return None


def _region(text: str, marker: re.Match) -> str:
    """What a marker introduces: a box's balanced content, else the rest of its line."""
    start = marker.end()
    if marker.group(0).endswith("{"):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i]
        return text[start:]  # an unclosed box (a cut-off response): its text so far
    return text[start : start + _REGION_CHARS].split("\n", 1)[0]


def latex_to_plain(text: str) -> str:
    """`text` with the LaTeX that only dresses numbers removed: wrappers keep their content,
    `{,}` and thin spaces in thousands groups go, `\\$`/`\\%` become `$`/`%`, math-mode `$`
    delimiters around a number go."""
    s = _WRAPPER_RE.sub("", text)
    for latex, plain in _LATEX_PLAIN:
        s = s.replace(latex, plain)
    s = _DIGIT_SPACE_RE.sub("", s)
    return s.replace("{", "").replace("}", "")


def extract_flexible(response: str) -> str | None:
    """The last number in the response, normalised (see the module docstring for why last)."""
    matches = NUMBER_RE.findall(latex_to_plain(response or ""))
    return normalize_number(matches[-1]) if matches else None


def gold_from_gsm8k(answer: str) -> str:
    """GSM8K's gold answer: the text after the last "####" of the rationale, normalised."""
    _, marker, tail = answer.rpartition("####")
    if not marker:
        raise ValueError(f"GSM8K answer has no '####' line: {answer[-80:]!r}")
    gold = normalize_number(tail)
    if gold is None:
        raise ValueError(f"GSM8K gold after '####' is not a number: {tail.strip()!r}")
    return gold


def is_correct(extracted: str | None, gold: str) -> bool:
    """An extracted answer is correct iff it normalises to the same number as the gold."""
    return extracted is not None and extracted == normalize_number(gold)
