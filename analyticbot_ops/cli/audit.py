"""The audit task: loads what analyticbot_ops.audit checks (merged compose files or running
containers, the Dockerfiles, hadolint's findings) and prints its reports."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from invoke import Collection
from rich.table import Table
from rich.text import Text

from .. import access_audit, baseimages, build, compose, model, secrets, stack_settings
from .. import audit as rules  # aliased: this module is cli/audit, and swarm.audit is imported too
from ..config import ops
from ..errors import BadInput, CheckFailed
from ..k8s import manifests, policy
from ..model import Labels
from ..paths import REPO_ROOT
from ..swarm import audit as swarm_audit  # aliased: analyticbot_ops.audit (`rules`) shares its name
from ._task import ops_task, out, print_json, progress, stack_of
from .legacy import Legacy

SETUID_HOOK = baseimages.HOOKS_DIR / "common.sh"  # every base recipe runs it first
STYLES = {"pass": "green", "FAIL": "bold red", "excepted": "yellow"}


def facts_by_service(config: Mapping[str, Any], namespace: str) -> dict[str, rules.ImageFacts]:
    """known_images, plus each service's image as the compose config names it: an image named through
    API_IMAGE (a release tag, a registry's copy) is judged by the recipe it is built from, not called root."""
    known = known_images(namespace)
    by_name = {ref.split("/")[-1].split(":")[0]: facts for ref, facts in known.items()}
    for service, body in (config.get("services") or {}).items():
        image = str(body.get("image", ""))
        if image not in known and service in model.BY_NAME:
            recipe = by_name.get(model.BY_NAME[service].image)
            if recipe is not None:
                known[image] = recipe
    return known


def known_images(namespace: str) -> dict[str, rules.ImageFacts]:
    """The images we build, by the reference compose names them: who they run as, whether they
    have a healthcheck. A base recipe's `changes` are Dockerfile instructions too."""
    known = {r.tag(namespace): rules.image_facts("\n".join(["FROM scratch", *r.changes])) for r in baseimages.RECIPES}
    rules.dockerfiles()  # each one exists
    for name, spec in build.IMAGES.items():
        known[build.service_tag(name, namespace)] = rules.image_facts(spec.dockerfile.read_text(), spec.target)
    return known


def running_containers(env: str) -> list[dict[str, Any]]:
    """The project's running containers, by service; `compose run` one-offs are not the stack."""
    running = compose.running_containers(compose.load_stack(env).project)
    return sorted(running, key=lambda i: (i["Config"]["Labels"].get(Labels.SERVICE, ""), i["Name"]))


def image_report(running: bool, exceptions: list[rules.AuditException]) -> rules.Report:
    paths = rules.dockerfiles()
    findings = [
        f
        for path, target in rules.built_images()
        for f in rules.dockerfile_findings(path, (REPO_ROOT / path).read_text(), target)
    ]
    if not running:  # 4.8 statically is about how bases are built; it says nothing of what runs
        findings.append(rules.setuid_finding(str(SETUID_HOOK.relative_to(REPO_ROOT)), SETUID_HOOK.read_text()))
    return rules.make_report("images", findings + rules.hadolint_findings(rules.run_hadolint(paths), paths), exceptions)


def print_report(report: rules.Report, title: str) -> None:
    """One row per check and outcome: targets with the same result and detail share it."""
    order: dict[str, int] = {}
    rows: dict[tuple[str, str, str, str], list[str]] = {}
    for f in report.findings:
        order.setdefault(f.check, len(order))
        rows.setdefault((f.check, f.result, f.detail, f.reason), []).append(f.target)
    table = Table("check", "target", "result", "detail", title=title, title_justify="left")
    for (check, result, detail, reason), targets in sorted(rows.items(), key=lambda row: order[row[0][0]]):
        shown = f"{detail}; excepted: {reason}" if reason else detail
        table.add_row(check, Text(", ".join(targets)), Text(result, style=STYLES[result]), Text(shown))
    out.print(table)


@ops_task(
    help={
        "env": "Audit only this environment: dev, staging or prod. Default: all three.",
        "running": "Audit the running containers (docker inspect) instead of the merged compose files.",
        "json": "Print the reports as JSON.",
    }
)
def run(c: Any, env: str | None = None, running: bool = False, json: bool = False) -> None:
    """Audit the stack against the CIS Docker Benchmark (compose, Dockerfiles, hadolint); exit 1 on a failure."""
    cfg = ops(c.config)
    exceptions = rules.parse_exceptions(cfg.audit_exceptions)
    envs = [stack_settings.check_env(env)] if env else list(model.ENVIRONMENTS)
    reports: list[tuple[str, rules.Report]] = []
    for name in envs:
        stack = stack_of(c, name)
        project = stack.project
        if running:
            infos = running_containers(name)
            if not infos and env:
                raise BadInput(
                    f"no running containers for project {project}; start it with `invoke stack.up --env {name}`"
                )
            if not infos:
                progress(f"{name}: no running containers of {project}, skipped")
                continue
            findings = rules.audit_containers(infos) + access_audit.live_findings(stack, infos)
        else:
            config = compose.merged_config(stack)
            findings = rules.audit_compose(config, facts_by_service(config, cfg.namespace))
            findings += access_audit.static_findings(config, secrets.REDIS_APP_RULES)
        # The proxy's configuration is the image's, whichever way the stack is audited.
        findings += access_audit.nginx_findings(access_audit.proxy_configuration())
        reports.append(
            (
                f"{name}: {project}, {'running containers' if running else 'compose files'}",
                rules.make_report(name, findings, exceptions),
            )
        )
    if not running and env in (None, "prod"):
        # The stack swarm.deploy would run, from prod's settings.
        prod = stack_of(c, "prod")
        swarm_stack = swarm_audit.rendered(prod)
        findings = rules.audit_compose(swarm_stack, facts_by_service(swarm_stack, cfg.namespace))
        findings += swarm_audit.swarm_findings(swarm_stack)
        reports.append(
            ("swarm: the prod stack rendered for docker stack deploy", rules.make_report("swarm", findings, exceptions))
        )
        # The set k8s.render writes for prod: Pod Security, the model's facts and the Compose topology.
        merged = compose.merged_config(prod)
        context = policy.context_of(merged)
        findings = policy.findings(manifests.render_stack(prod, merged=merged), context)
        reports.append(("k8s: the prod set k8s.render writes", rules.make_report("k8s", findings, exceptions)))
    if running and not reports:
        raise BadInput("no running containers for any environment; start one with `invoke stack.up --env dev`")
    reports.append(("images: Dockerfiles and hadolint", image_report(running, exceptions)))
    if json:
        print_json(
            {
                "mode": "running" if running else "static",
                "ok": not any(r.failed for _, r in reports),
                "reports": [r.to_dict() for _, r in reports],
            }
        )
    else:
        for title, report in reports:
            print_report(report, title)
        for _, report in reports:
            out.print(report.summary(), markup=False)
    failed = [r.name for _, r in reports if r.failed]
    if failed:
        raise CheckFailed(f"the audit failed for {', '.join(failed)}")


ns = Collection("audit")
ns.add_task(run, default=True)
LEGACY = {"audit": Legacy("audit.run")}
