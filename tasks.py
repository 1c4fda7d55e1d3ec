"""AnalyticBot Ops tasks: `invoke --list` shows them by namespace, `invoke --help TASK` their options.

Each namespace is a module of analyticbot_ops/cli/; this file only assembles them and sets the defaults,
which invoke.yaml can override. The first release's flat names (`invoke deploy-prod`, `invoke
secrets-check`) still work: cli/legacy.py maps each to its namespaced task, and `make help` lists them."""

from pathlib import Path

from analyticbot_ops.cli import (
    audit,
    environment,
    health,
    images,
    k8s,
    legacy,
    monitoring,
    schedule,
    secrets,
    stack,
    swarm,
    tls,
)
from analyticbot_ops.config import DEFAULTS, check_project_file

# Invoke reads invoke.yaml after this module: a broken one is stopped here with one line, not its traceback.
check_project_file(Path(__file__).resolve().parent)
legacy.install()

MODULES = (stack, images, secrets, tls, health, monitoring, schedule, environment, audit, swarm, k8s)
ns = legacy.TaskTree(*(m.ns for m in MODULES), legacy={k: v for m in MODULES for k, v in m.LEGACY.items()})
ns.configure(DEFAULTS)
