"""Nox sessions: `nox` runs lint, tests, k8s_policy and integration; `nox -s bench` the benchmarks.

Dependencies come from setup.cfg's extras, never a second list here. The
integration session needs a Docker daemon and builds every image it uses."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests", "k8s_policy", "integration"]
nox.options.reuse_existing_virtualenvs = True
# uv (scripts/bootstrap puts it in .venv) builds a session's environment in seconds; virtualenv and pip where
# it is absent.
nox.options.default_venv_backend = "uv|virtualenv"
# pytest exits 5 when a selection collects nothing: fine for a filtered run
# (`nox -s tests -- -k name`), a failure for the full suites.
PYTEST_OK = [0, 5]


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (lint, format), mypy, hadolint, yamllint on compose/, and the static `invoke audit.run`."""
    # The test extra too: mypy follows the services' imports into their libraries (fastapi, asyncpg, ...).
    session.install("-e", ".[dev,test]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # mypy --strict on the toolkit and the services' packages (the [mypy] section of setup.cfg).
    session.run("mypy")
    session.run("hadolint", "--config", ".hadolint.yaml", "services/Dockerfile", "nginx/Dockerfile")
    session.run("yamllint", "-c", ".yamllint.yaml", "compose/")
    # Every environment's merged compose and the Dockerfiles against the CIS checks;
    # `docker-compose config` needs no daemon, and nothing is built or started.
    session.run("invoke", "audit.run")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests: no Docker, fast."""
    session.install("-e", ".[test]")
    # Coverage of the toolkit from unit tests alone, module by module (the services' code is proven by the
    # integration suite against real containers).
    coverage = ["--cov=analyticbot_ops", "--cov-report=term-missing:skip-covered"]
    # CPU-bound: one pytest-xdist worker per core (113 s serial, 68 s on this host's 2).
    workers = ["--numprocesses", "auto"]
    session.run(
        "pytest", "tests/unit", "-q", *workers, *coverage, *session.posargs,
        success_codes=PYTEST_OK if session.posargs else [0],
    )  # fmt: skip


# checkov's Kubernetes checks that the rendered sets must pass (a skip only as a justified annotation on the
# object): probes, requests and limits, pinned images, no host namespaces or ports, no privilege, non-root, a
# read-only root, seccomp, dropped capabilities, secrets as files, no service account token, a network policy.
K8S_CHECKS = [
    *(f"CKV_K8S_{n}" for n in (*range(8, 24), *range(25, 32), 35, *range(37, 42), 43)),
    "CKV2_K8S_6",
]


@nox.session
def k8s_policy(session: nox.Session) -> None:
    """checkov's Kubernetes checks on the rendered sets, offline (the golden sets the unit tests hold to k8s.render)."""
    session.install("-e", ".[k8s-policy]")
    for env in ("dev", "staging", "prod"):
        # --skip-download: checkov otherwise asks its vendor's API for extra checks and guidelines.
        session.run(
            "checkov", "--directory", f"tests/golden/k8s/{env}", "--framework", "kubernetes", "--skip-download",
            "--check", ",".join(K8S_CHECKS), "--compact", "--quiet",
        )  # fmt: skip


# The test extra, and pip: `invoke images.build` builds the wheelhouses with `python -m pip wheel`, and a uv
# environment has no pip.
WITH_DOCKER = ("-e", ".[test]", "pip")
# The integration suite waits on containers most of its time (a serial run keeps a third of this host's 2 cores
# busy), so its groups (tests/integration/conftest.py schedules them) run on 3 workers. `-- -n 0` runs it serially.
INTEGRATION_WORKERS = ["--numprocesses", "3"]


@nox.session
def integration(session: nox.Session) -> None:
    """Integration tests against real containers (needs Docker; builds the images)."""
    session.install(*WITH_DOCKER)
    # The Observatory scanner's pinned dependencies no longer build; its working
    # set comes from the test extra above.
    session.install("--no-deps", "httpobs==0.9.3")
    # Ryuk's image would have to be pulled, and no registry answers here: the
    # tests clean up after themselves instead.
    session.env["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    session.run("invoke", "images.base")
    session.run("invoke", "images.build")
    # The full suite must run tests; only a filtered run (posargs) may select none.
    codes = PYTEST_OK if session.posargs else [0]
    session.run("pytest", "tests/integration", "-q", *INTEGRATION_WORKERS, *session.posargs, success_codes=codes)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks: image sizes and rebuild ratios, a stack's timings and load, live deploys (opt-in, slow)."""
    session.install(*WITH_DOCKER)
    session.run("python", "benchmarks/images.py")
    session.run("python", "benchmarks/stack.py", *session.posargs)
    session.run("python", "benchmarks/monitoring.py")
    session.run("python", "benchmarks/backup.py")
    session.run("python", "benchmarks/deploy.py")
    session.run("python", "benchmarks/swarm.py")
