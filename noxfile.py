"""Nox sessions: `nox` runs lint, tests and integration; `nox -s bench` the benchmarks.

Dependencies come from setup.cfg's extras, never a second list here. The
integration session needs a Docker daemon and builds every image it uses."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests", "integration"]
nox.options.reuse_existing_virtualenvs = True
# pytest exits 5 when a selection collects nothing: fine for a filtered run
# (`nox -s tests -- -k name`), a failure for the full suites.
PYTEST_OK = [0, 5]


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (lint, format), hadolint, yamllint on compose/, and the static `invoke audit`."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("hadolint", "--config", ".hadolint.yaml", "services/Dockerfile", "nginx/Dockerfile")
    session.run("yamllint", "-c", ".yamllint.yaml", "compose/")
    # Every environment's merged compose and the Dockerfiles against the CIS checks;
    # `docker-compose config` needs no daemon, and nothing is built or started.
    session.run("invoke", "audit")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests: no Docker, fast."""
    session.install("-e", ".[test]")
    # Coverage of the toolkit from unit tests alone, module by module (the services' code is proven by the
    # integration suite against real containers).
    coverage = ["--cov=analyticbot_ops", "--cov-report=term-missing:skip-covered"]
    session.run(
        "pytest", "tests/unit", "-q", *coverage, *session.posargs, success_codes=PYTEST_OK if session.posargs else [0]
    )


@nox.session
def integration(session: nox.Session) -> None:
    """Integration tests against real containers (needs Docker; builds the images)."""
    session.install("-e", ".[test]")
    # The Observatory scanner's pinned dependencies no longer build; its working
    # set comes from the test extra above.
    session.install("--no-deps", "httpobs==0.9.3")
    # Ryuk's image would have to be pulled, and no registry answers here: the
    # tests clean up after themselves instead.
    session.env["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    session.run("invoke", "base-images")
    session.run("invoke", "build-optimized")
    # The full suite must run tests; only a filtered run (posargs) may select none.
    codes = PYTEST_OK if session.posargs else [0]
    session.run("pytest", "tests/integration", "-q", *session.posargs, success_codes=codes)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks: image sizes and rebuild ratios, a stack's timings and load, live deploys (opt-in, slow)."""
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/images.py")
    session.run("python", "benchmarks/stack.py", *session.posargs)
    session.run("python", "benchmarks/monitoring.py")
    session.run("python", "benchmarks/backup.py")
    session.run("python", "benchmarks/deploy.py")
    session.run("python", "benchmarks/swarm.py")
