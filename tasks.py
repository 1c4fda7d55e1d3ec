"""AnalyticBot Ops tasks: `invoke --list` shows them all, `invoke --help TASK` their options.

Each concern's tasks live in analyticbot_ops/cli/; this file only assembles them
into one flat namespace (the names the legacy Makefile targets map to) and sets
the defaults, which invoke.yaml can override."""

from pathlib import Path

from invoke import Collection

from analyticbot_ops.cli import audit, environment, health, images, secrets, stack, tls
from analyticbot_ops.config import DEFAULTS, check_project_file

# Invoke reads invoke.yaml after this module: a broken one is stopped here with one line, not its traceback.
check_project_file(Path(__file__).resolve().parent)

ns = Collection()
for module in (images, secrets, tls, stack, health, environment, audit):
    for name, task_object in module.ns.tasks.items():
        ns.add_task(task_object, name=name)
ns.configure(DEFAULTS)
