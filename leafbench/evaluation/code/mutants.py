"""Mutants of the HumanEval+ canonical solutions, built at run time, each with how it was built.

Gold replay shows that right programs pass; it cannot show that wrong ones fail, that a wrong
program which happens to compute the same outputs still passes, or that printing, raising,
slow and exiting programs are judged as evalplus judges them. These programs are what the
mutant test and benchmark (`leafbench.bench.code_mutants`) score with leafbench and with
evalplus; their expected verdicts come from `mutant_oracle`, never from either checker.

Kinds (`KINDS`, one builder each):

``canonical``        the canonical solution itself.
``flip_comparison``  one comparison operator negated (``<`` to ``>=``, ``==`` to ``!=``,
                     ``in`` to ``not in``, ...).
``off_by_one``       one integer literal plus or minus one.
``return_none``      ``return None`` put first in one block of the entry function (its body,
                     or the body of an if/for/while/with/try inside it).
``swap_operator``    one arithmetic, bitwise or boolean operator swapped (``+``/``-``,
                     ``*`` to ``+``, ``//`` to ``/``, ``and``/``or``, ...).
``prints``           the canonical solution, printing to stdout and stderr on every call.
``slow``             the canonical solution computing every answer twice: within every limit
                     (limits are at least 4 × the reference time).
``hangs``            a busy loop that never ends, on the first call.
``sleeps``           ``time.sleep`` well past the first input's limit, on the first call.
``raises``           raises on the first call.
``raises_on_plus``   raises on one input that only the plus suite has: passes base only.
``exits``            ``os._exit(0)`` on the first call.
``exits_on_plus``    ``os._exit(0)`` on one plus-only input: passes base only.

The AST kinds rewrite ``prompt + canonical_solution`` (helpers in the prompt included) and
print it with `ast.unparse`; which site is mutated is a seeded choice per task and kind, so a
run is reproducible. The behaviour kinds rename the canonical entry point (recursive calls
included) and put a wrapper with the entry point's name in front of it; everything they do
happens inside that function, so evalplus' `sanitize` (what leafbench extracts) keeps it.
"""

from __future__ import annotations

import ast
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

REFERENCE_NAME = "_canonical_solution"


@dataclass(frozen=True)
class Mutant:
    """One program for a HumanEval+ task, and how it was built."""

    task_id: str
    kind: str
    site: int  # which of the kind's sites in the program was mutated (0 for behaviour kinds)
    code: str

    @property
    def name(self) -> str:
        return f"{self.task_id}:{self.kind}:{self.site}"


# ------------------------------------------------------------------------------ AST kinds
NEGATED: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
SWAPPED: dict[type[ast.AST], type[ast.AST]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
    ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.BitXor: ast.BitAnd,
    ast.LShift: ast.RShift, ast.RShift: ast.LShift, ast.And: ast.Or, ast.Or: ast.And,
}
BLOCK_FIELDS = ("body", "orelse", "finalbody")


class _Sites(ast.NodeTransformer):
    """Counts a kind's mutation sites in walk order and rewrites the `target`-th (None: count
    only). Subclasses call `hit()` once per site and rewrite when it says so."""

    def __init__(self, target: int | None, entry_point: str) -> None:
        self.target = target
        self.entry_point = entry_point
        self.count = 0

    def hit(self) -> bool:
        index, self.count = self.count, self.count + 1
        return index == self.target


class _FlipComparison(_Sites):
    def visit_Compare(self, node: ast.Compare) -> ast.AST:  # noqa: N802 - ast's visitor names
        self.generic_visit(node)
        for i, op in enumerate(node.ops):
            if type(op) in NEGATED and self.hit():
                node.ops[i] = NEGATED[type(op)]()
        return node


class _OffByOne(_Sites):
    """Two sites per integer literal: plus one, then minus one."""

    def visit_Constant(self, node: ast.Constant) -> ast.AST:  # noqa: N802
        if isinstance(node.value, int) and not isinstance(node.value, bool):
            for delta in (1, -1):
                if self.hit():
                    return ast.copy_location(ast.Constant(node.value + delta), node)
        return node


class _SwapOperator(_Sites):
    def _swap(self, node: Any) -> Any:
        self.generic_visit(node)
        if type(node.op) in SWAPPED and self.hit():
            node.op = SWAPPED[type(node.op)]()
        return node

    visit_BinOp = visit_AugAssign = visit_BoolOp = _swap  # noqa: N815


class _ReturnNone(_Sites):
    """Sites: the blocks of the entry function, the function body first."""

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:  # noqa: N802
        if node.name == self.entry_point:
            for block in _blocks(node):
                if self.hit():
                    block.insert(0, ast.Return(ast.Constant(None)))
            return node
        return self.generic_visit(node)


def _blocks(function: ast.FunctionDef) -> list[list[ast.stmt]]:
    blocks = [function.body]
    for node in ast.walk(function):
        if node is function or not isinstance(node, (ast.If, ast.For, ast.While, ast.With,
                                                     ast.Try)):
            continue
        blocks.extend(getattr(node, f) for f in BLOCK_FIELDS if getattr(node, f, None))
        if isinstance(node, ast.Try):
            blocks.extend(h.body for h in node.handlers)
    return blocks


AST_KINDS: dict[str, type[_Sites]] = {
    "flip_comparison": _FlipComparison,
    "off_by_one": _OffByOne,
    "return_none": _ReturnNone,
    "swap_operator": _SwapOperator,
}


def program(problem: dict[str, Any]) -> str:
    return problem["prompt"] + problem["canonical_solution"]


def count_sites(problem: dict[str, Any], kind: str) -> int:
    sites = AST_KINDS[kind](None, problem["entry_point"])
    sites.visit(ast.parse(program(problem)))
    return sites.count


def ast_mutant(problem: dict[str, Any], kind: str, site: int) -> Mutant:
    """The program with site `site` of `kind` mutated."""
    tree = ast.parse(program(problem))
    mutator = AST_KINDS[kind](site, problem["entry_point"])
    tree = ast.fix_missing_locations(mutator.visit(tree))
    if site >= mutator.count:
        raise ValueError(f"{problem['task_id']} has {mutator.count} {kind} sites, not {site + 1}")
    return Mutant(problem["task_id"], kind, site, ast.unparse(tree) + "\n")


# ------------------------------------------------------------------------------ behaviour kinds
def trap_input(problem: dict[str, Any]) -> list | None:
    """The shortest plus input equal to no base input (None: every plus input is a base one)."""
    base = problem["base_input"]
    only_plus = [i for i in problem["plus_input"] if i not in base]
    return min(only_plus, key=lambda i: len(json.dumps(i)), default=None)


def _first_call(action: str) -> str:
    """Run `action` on the first call only (a function attribute counts the calls)."""
    return (
        "if not getattr(_behaviour, 'called', False):\n"
        "    _behaviour.called = True\n"
        f"    {action}\n"
    )


def _on_trap(action: str) -> Callable[[dict[str, Any]], str | None]:
    def build(problem: dict[str, Any]) -> str | None:
        trap = trap_input(problem)
        if trap is None:
            return None
        literal = repr(json.dumps(trap))
        return f"if list(args) == __import__('json').loads({literal}):\n    {action}\n"
    return build


def _repeat(times: int) -> str:
    """Compute the answer `times` times in all (on fresh copies: a solution may change its
    arguments), so every call takes `times` × the reference's time."""
    return (f"for _ in range({times - 1}):\n"
            f"    {REFERENCE_NAME}(*__import__('copy').deepcopy(args))\n")


def _sleep_past_limit(problem: dict[str, Any]) -> str:
    """Sleep past any limit the first input can have: evalplus' floor is 1 s and every base
    input of HumanEval+ runs in milliseconds; 2.5 s is well past both."""
    return _first_call("__import__('time').sleep(2.5)")


# Each builds the statements run before the canonical answer is returned (None: not applicable
# to this problem), or, for "slow", how the answer is computed.
BEHAVIOURS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "prints": lambda p: (
        "print('debug:', args)\n__import__('sys').stderr.write('working on it\\n')\n"
        "print('PASS', flush=True)\n"
    ),
    "slow": lambda p: _repeat(2),
    "hangs": lambda p: _first_call("while True:\n        pass"),
    "sleeps": _sleep_past_limit,
    "raises": lambda p: _first_call("raise ValueError('mutant raises')"),
    "raises_on_plus": _on_trap("raise ValueError('mutant raises on a plus input')"),
    "exits": lambda p: _first_call("__import__('os')._exit(0)"),
    "exits_on_plus": _on_trap("__import__('os')._exit(0)"),
}


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.AST:  # noqa: N802
        if node.id == self.old:
            node.id = self.new
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:  # noqa: N802
        if node.name == self.old:
            node.name = self.new
        return self.generic_visit(node)


def behaviour_mutant(problem: dict[str, Any], kind: str) -> Mutant | None:
    """The canonical solution renamed, behind a wrapper that does `kind` first (None: the
    kind does not apply, e.g. no plus-only input)."""
    before = BEHAVIOURS[kind](problem)
    return None if before is None else _wrapped(problem, kind, 0, before)


def slowed(problem: dict[str, Any], times: int) -> Mutant:
    """The canonical solution computing every answer `times` times: exactly `times` × its
    CPU time, for probing time limits (kind "slow", site = `times`)."""
    return _wrapped(problem, "slow", times, _repeat(times) if times > 1 else "pass\n")


def _wrapped(problem: dict[str, Any], kind: str, site: int, before: str) -> Mutant:
    entry = problem["entry_point"]
    tree = _Rename(entry, REFERENCE_NAME).visit(ast.parse(program(problem)))
    indented = "".join(f"    {line}\n" for line in before.splitlines())
    wrapper = (
        f"\n\ndef {entry}(*args):\n    _behaviour = {entry}\n{indented}"
        f"    return {REFERENCE_NAME}(*args)\n"
    )
    return Mutant(problem["task_id"], kind, site, ast.unparse(tree) + wrapper)


def canonical_mutant(problem: dict[str, Any]) -> Mutant:
    return Mutant(problem["task_id"], "canonical", 0, program(problem))


KINDS: tuple[str, ...] = ("canonical", *AST_KINDS, *BEHAVIOURS)


# ------------------------------------------------------------------------------ suites
def mutants_of(
    problem: dict[str, Any], kinds: Iterable[str] = KINDS, *, per_kind: int = 1, seed: int = 0
) -> list[Mutant]:
    """Up to `per_kind` distinct mutants of each kind for one problem (AST sites chosen with a
    generator seeded by `seed`, the task and the kind)."""
    out: list[Mutant] = []
    for kind in kinds:
        if kind == "canonical":
            out.append(canonical_mutant(problem))
        elif kind in BEHAVIOURS:
            mutant = behaviour_mutant(problem, kind)
            out.extend([mutant] if mutant is not None else [])
        else:
            n = count_sites(problem, kind)
            rng = random.Random(f"{seed}:{problem['task_id']}:{kind}")
            for site in sorted(rng.sample(range(n), min(per_kind, n))):
                out.append(ast_mutant(problem, kind, site))
    return out


def suite(
    problems: Sequence[dict[str, Any]],
    *,
    behaviour_every: int = 1,
    per_kind: int = 1,
    seed: int = 0,
) -> list[Mutant]:
    """Mutants of every problem: the canonical solution and the AST kinds for all of them, the
    behaviour kinds for every `behaviour_every`-th problem (they test the runner, not the
    comparison, so a sample of tasks is enough)."""
    out: list[Mutant] = []
    ast_kinds = ("canonical", *AST_KINDS)
    for i, problem in enumerate(problems):
        kinds = ast_kinds + (tuple(BEHAVIOURS) if i % behaviour_every == 0 else ())
        out.extend(mutants_of(problem, kinds, per_kind=per_kind, seed=seed))
    return out
