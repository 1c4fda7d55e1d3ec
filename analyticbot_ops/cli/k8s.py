"""The `k8s` namespace: the stack for Kubernetes, proven without a cluster.

`render` writes an environment's manifest set (a kustomization) from the model and the merged compose files,
never a secret's value; `validate` checks a set against the schemas of Kubernetes 1.30, 1.33 and 1.37 and our
own cross-references; `secrets` prints (or runs) the kubectl commands that make the Secrets from secrets/.
`invoke audit.run` reads the same sets for its k8s report."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

from invoke import Collection

from .. import docker, model, registry, runner, secrets, stack_settings
from ..errors import BadInput, CheckFailed
from ..k8s import manifests, render
from ..k8s import validate as checks  # aliased: `validate` is this namespace's task (k8s.validate)
from ._task import ops_task, print_json, progress, stack_of
from ._task import out as console  # aliased: `out` is k8s.render's option

ENV = "Environment whose settings and compose overlay the set renders: dev, staging or prod."


def rendered(c: Any, env: str, registry_host: str | None = None, **options: Any) -> dict[str, list[dict[str, Any]]]:
    """An environment's set, its images pinned by digest in `registry_host` when one is given (pushed there)."""
    stack = stack_of(c, env)
    images = None
    if registry_host:
        docker.require_daemon()
        images = registry.push_pinned(stack, registry_host, registry_host, progress)
    return manifests.render_stack(stack, images, **options)


@ops_task(
    help={
        "env": ENV,
        "out": "Folder to write the set into (default .state/k8s/ENV); files it rendered before and not now go.",
        "registry": "HOST[:PORT]/PATH of a registry the cluster pulls from: the images are pushed there and pinned "
        "by digest. Default: the images' own names, by tag.",
        "service_type": "The public proxy Service's type: LoadBalancer (default), NodePort or ClusterIP.",
        "pod_cidr": "The cluster's pod network: the apps trust X-Forwarded-* from it, the proxy's stub_status "
        "answers it (the network policies say which pods reach them). Default 10.0.0.0/8.",
        "json": "Print the written files as JSON.",
    }
)
def render_set(
    c: Any,
    env: str = "prod",
    out: str | None = None,
    registry: str | None = None,
    service_type: str = "LoadBalancer",
    pod_cidr: str = render.Options.pod_cidr,
    json: bool = False,
) -> None:
    """Render the stack as Kubernetes manifests for an environment (kubectl apply -k FOLDER); no secret value."""
    stack_settings.check_env(env)
    folder = Path(out) if out else manifests.default_out(env)
    files = rendered(c, env, registry, service_type=service_type, pod_cidr=pod_cidr)
    written = manifests.write(files, folder)
    if json:
        print_json({"env": env, "folder": str(folder), "files": [p.name for p in written]})
        return
    count = sum(len(documents) for documents in files.values())
    console.print(f"{env}: {count} objects in {len(written)} files under {folder}", markup=False)
    if not registry:
        progress("images by tag: give --registry to push them and pin them by digest")
    console.print(f"apply: invoke k8s.secrets --env {env} --apply, then kubectl apply -k {folder}", markup=False)


def _problems(c: Any, env: str, folder: Path | None) -> tuple[int, list[checks.Problem]]:
    stack = stack_of(c, env)
    files = manifests.read(folder) if folder else manifests.render_stack(stack)
    made = [s.name for s in manifests.secret_objects(stack)]
    return sum(len(d) for d in files.values()), checks.problems(files, made, stack.project)


@ops_task(
    help={
        "env": "Validate only this environment's set (default: all three).",
        "dir": "Validate the set written in this folder instead of rendering one (needs --env).",
        "json": "Print the problems as JSON.",
    }
)
def validate(c: Any, env: str | None = None, dir: str | None = None, json: bool = False) -> None:
    """Validate the manifest sets: Kubernetes 1.30, 1.33 and 1.37 schemas (strict), then cross-references."""
    if dir and not env:
        raise BadInput("--dir needs --env: the environment says which Secrets exist and the namespace")
    envs = [stack_settings.check_env(env)] if env else list(model.ENVIRONMENTS)
    results = {name: _problems(c, name, Path(dir) if dir else None) for name in envs}
    if json:
        print_json(
            {
                "versions": list(checks.VERSIONS),
                "ok": not any(problems for _, problems in results.values()),
                "sets": {
                    name: {"objects": count, "problems": [str(p) for p in problems]}
                    for name, (count, problems) in results.items()
                },
            }
        )
    else:
        for name, (count, problems) in results.items():
            for problem in problems:
                console.print(f"{name}: {problem}", markup=False)
            verdict = f"{len(problems)} problems" if problems else "valid"
            console.print(f"{name}: {count} objects, Kubernetes {', '.join(checks.VERSIONS)}: {verdict}", markup=False)
    failed = [name for name, (_, problems) in results.items() if problems]
    if failed:
        raise CheckFailed(f"the manifests of {', '.join(failed)} are not valid")


@ops_task(
    help={
        "env": ENV,
        "apply": "Run the commands (kubectl's current context) instead of printing them.",
    }
)
def secrets_commands(c: Any, env: str = "prod", apply: bool = False) -> None:
    """Print (or, with --apply, run) the kubectl commands that make the set's Secrets from secrets/."""
    stack_settings.check_env(env)
    stack = stack_of(c, env)
    objects = manifests.secret_objects(stack)
    namespace = stack.project
    if not apply:
        for secret in objects:
            command = shlex.join(manifests.create_command(secret, namespace))
            console.print(f"{command} | kubectl apply -f -", markup=False, soft_wrap=True)
        return
    if shutil.which("kubectl") is None:
        raise BadInput("kubectl is not installed; run the printed commands where it is (invoke k8s.secrets)")
    missing = manifests.missing_files(objects, stack)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise BadInput(f"missing for the Secrets: {shown}; run `invoke secrets.init --env {env}`")
    secrets.ensure_optional_placeholders(Path(stack.settings["SECRETS_DIR"]))
    for secret in objects:
        # The value goes from the file through kubectl's stdout into our memory and kubectl's stdin: never an
        # argument, never a file of ours.
        printed = runner.run(manifests.create_command(secret, namespace), what="kubectl create secret", text=False)
        runner.run(["kubectl", "apply", "-f", "-"], input=printed.stdout, what="kubectl apply", text=False)
        progress(f"  {namespace}/{secret.name}")


ns = Collection("k8s")
ns.add_task(render_set, name="render", default=True)
ns.add_task(validate, name="validate")
ns.add_task(secrets_commands, name="secrets")
LEGACY: dict[str, Any] = {}
