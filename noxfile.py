"""Developer sessions. `nox -s tests` is what CI runs (see README and .ci/run)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

# torch first, pinned, from the same index as everything else; sam2 builds from an sdist and
# must not try to compile its optional CUDA extension on machines without a CUDA toolkit.
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
BUILD_ENV = {"SAM2_BUILD_CUDA": "0"}
TEST_ENV = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}


def _install(session: nox.Session) -> None:
    session.install(*TORCH)
    session.install("-e", ".[dev]", env=BUILD_ENV)


@nox.session
def tests(session: nox.Session) -> None:
    """The CPU test suite (default)."""
    _install(session)
    session.run("pytest", "-m", "not slow and not ray", *session.posargs, env=TEST_ENV)


@nox.session
def slow(session: nox.Session) -> None:
    """Long end-to-end runs: full demo, more steps."""
    _install(session)
    session.run("pytest", "-m", "slow", *session.posargs, env=TEST_ENV)


@nox.session
def ray(session: nox.Session) -> None:
    """`vdir batch --ray` on a local Ray instance (installs the [ray] extra)."""
    session.install(*TORCH)
    session.install("-e", ".[dev,ray]", env=BUILD_ENV)
    session.run("pytest", "-m", "ray", *session.posargs, env=TEST_ENV)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    _install(session)
    session.run("mypy")


@nox.session
def quality(session: nox.Session) -> None:
    """Quality benchmark on the toy model (docs/quality.md); `nox -s quality -- --quick` to smoke."""
    _install(session)
    session.run("python", "-m", "benchmarks.quality", *session.posargs, env=TEST_ENV)
