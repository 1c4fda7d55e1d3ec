"""The `k8s` tasks (cli/k8s.py) as a user runs them: `k8s.render` writes the set into a folder (removing only what
an earlier render of ours left), `k8s.validate` exits 1 naming the object of a planted problem, `k8s.secrets`
prints one kubectl pipeline per Secret with file paths and never a value, and with --apply passes each Secret to
`kubectl apply -f -` on stdin, never in an argument. Bad input is one `error:` line, exit code 2, nothing written.
No daemon and no cluster: Compose's `config` (which reads files and asks no daemon) runs for real, kubectl is a
fake, and any other command fails the test."""

from __future__ import annotations

import base64
import json
import secrets as random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import Exit

from analyticbot_ops import model, runner
from analyticbot_ops.cli import k8s as k8s_cli
from analyticbot_ops.k8s import manifests, render
from analyticbot_ops.k8s import validate as checks
from analyticbot_ops.tls import backup as backup_tls
from analyticbot_ops.tls import layout as tls_layout
from tests.unit import k8s_support
from tests.unit.cli_support import context, fails, isolated_tasks

KUBECTL = "/usr/local/bin/kubectl"


class Kubectl(runner.FakeRunner):
    """A fake kubectl (each call recorded; `create secret --dry-run=client` prints the Secret from the files it
    names, as kubectl does); the docker client's probes and Compose's `config` run for real; anything else is a
    command a unit test must not run."""

    def run(self, call: runner.Call, *, capture: bool, text: bool) -> Any:
        program, args = Path(call.argv[0]).name, call.argv[1:]
        if program == "kubectl":
            self.calls.append(call)
            printed = self._secret(args) if args[:2] == ("create", "secret") else ""
            return self._shaped(call, runner.Completed(list(call.argv), 0, printed, ""), text)
        no_daemon = args[:1] == ("--version",) or args[:2] in (("compose", "version"), ("buildx", "version"))
        if program in ("docker", "docker-compose") and (no_daemon or args[-1:] == ("config",)):
            return runner.SubprocessRunner().run(call, capture=capture, text=text)
        raise AssertionError(f"a unit test tried to run {' '.join(call.argv)}")

    @staticmethod
    def _secret(args: tuple[str, ...]) -> str:
        kind, name = args[2], args[3]
        sources = {}
        for arg in args:
            if arg.startswith("--from-file="):
                key, _, path = arg.removeprefix("--from-file=").partition("=")
                sources[key] = path
            elif arg.startswith(("--cert=", "--key=")):
                option, _, path = arg.partition("=")
                sources["tls.crt" if option == "--cert" else "tls.key"] = path
        data = {key: base64.b64encode(Path(path).read_bytes()).decode() for key, path in sources.items()}
        kind = "kubernetes.io/tls" if kind == "tls" else "Opaque"
        return yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": kind,
                               "data": data})  # fmt: skip

    def kubectl(self) -> list[runner.Call]:
        return [c for c in self.calls if Path(c.argv[0]).name == "kubectl"]


@pytest.fixture
def kubectl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Kubectl]:
    with isolated_tasks(monkeypatch, tmp_path), runner.use(Kubectl()) as fake:
        yield fake


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


# --- render ---------------------------------------------------------------------------------------------------


def test_render_writes_the_set_and_removes_only_what_an_earlier_render_of_ours_left(
    kubectl: Kubectl, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "set"
    out.mkdir()
    # An earlier render wrote a file this one does not (a service since removed); someone else's file is beside it.
    stale = out / "legacy-worker.yaml"
    labels = render.common_labels("api", render.Options("analyticbot", {}, "r"))
    stale.write_text(render.dump([{"kind": "Deployment", "metadata": {"name": "legacy-worker", "labels": labels}}]))
    foreign = out / "ingress.yaml"
    foreign.write_text("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: mine\n")
    # A user's own patch that copies our labels, but that no render of ours listed: it stays too.
    patch = out / "patch-api.yaml"
    patch.write_text(render.dump([{"kind": "Deployment", "metadata": {"name": "api", "labels": labels}}]))
    earlier = {"kind": "Kustomization", "resources": ["legacy-worker.yaml", "api.yaml"]}
    (out / "kustomization.yaml").write_text(render.dump([earlier]))
    notes = out / "NOTES.txt"
    notes.write_text("app.kubernetes.io/managed-by: analyticbot-ops")

    k8s_cli.render_set(context(), env="prod", out=str(out))

    written = {p.name for p in out.iterdir()}
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert written == {*kustomization["resources"], "kustomization.yaml", "ingress.yaml", "NOTES.txt", "patch-api.yaml"}
    assert {"postgres.yaml", "api.yaml", "network-policies.yaml", "configmaps.yaml"} <= written
    assert not stale.exists() and foreign.exists() and notes.exists() and patch.exists()
    assert kustomization["namespace"] == "analyticbot"
    objects = sum(len(documents) for documents in manifests.read(out).values()) - 2  # the Ingress, the patch
    said = _lines(capsys.readouterr().out)
    assert said[0] == f"prod: {objects} objects in {len(kustomization['resources']) + 1} files under {out}"
    assert said[1] == f"apply: invoke k8s.secrets --env prod --apply, then kubectl apply -k {out}"
    # The images are the stack's own, by tag (no --registry): what Compose runs.
    api = next(d for d in yaml.safe_load_all((out / "api.yaml").read_text()) if d["kind"] == "Deployment")
    assert api["spec"]["template"]["spec"]["containers"][0]["image"] == "analyticbot/api:latest"
    # Only Compose's config ran, and no kubectl.
    assert kubectl.kubectl() == []


def test_render_json_lists_the_files_written(kubectl: Kubectl, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "set"
    k8s_cli.render_set(context(), env="staging", out=str(out), json=True)
    printed = json.loads(capsys.readouterr().out)
    assert printed["env"] == "staging" and printed["folder"] == str(out)
    assert sorted(printed["files"]) == sorted(p.name for p in out.glob("*.yaml"))
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == "analyticbot-staging"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"service_type": "Ingress"}, "error: --service-type must be one of LoadBalancer, NodePort, ClusterIP, got "
         "'Ingress'"),
        ({"pod_cidr": "10.0.0.0/33"}, "error: --pod-cidr must be a network such as 10.0.0.0/8, got '10.0.0.0/33'"),
        ({"pod_cidr": "pods"}, "error: --pod-cidr must be a network such as 10.0.0.0/8, got 'pods'"),
        ({"env": "qa"}, "error: unknown environment 'qa'; use one of: dev, staging, prod"),
    ],
    ids=["service-type", "pod-cidr-prefix", "pod-cidr-word", "env"],
)  # fmt: skip
def test_render_with_a_bad_option_is_one_line_code_2_and_writes_nothing(
    kubectl: Kubectl, tmp_path: Path, option: dict[str, str], message: str
) -> None:
    out = tmp_path / "set"
    assert fails(2, k8s_cli.render_set, context(), out=str(out), **{"env": "prod", **option}) == message
    assert not out.exists()
    assert kubectl.calls == []  # refused before Compose was asked


def test_render_into_a_file_is_bad_input(kubectl: Kubectl, tmp_path: Path) -> None:
    out = tmp_path / "set.yaml"
    out.write_text("mine")
    assert (
        fails(2, k8s_cli.render_set, context(), env="dev", out=str(out))
        == f"error: --out {out} is a file, not a folder"
    )
    assert out.read_text() == "mine"


def test_the_pod_cidr_reaches_the_apps_trusted_proxies(kubectl: Kubectl, tmp_path: Path) -> None:
    out = tmp_path / "set"
    k8s_cli.render_set(context(), env="prod", out=str(out), pod_cidr="100.96.0.0/11", service_type="NodePort")
    api = next(d for d in yaml.safe_load_all((out / "api.yaml").read_text()) if d["kind"] == "Deployment")
    env = {e["name"]: e["value"] for e in api["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FORWARDED_ALLOW_IPS"] == "100.96.0.0/11"
    public = [
        d for d in yaml.safe_load_all((out / "proxy.yaml").read_text()) if d["metadata"]["name"] == "proxy-public"
    ]
    assert public[0]["spec"]["type"] == "NodePort"


# --- validate ---------------------------------------------------------------------------------------------------


def _written_prod(folder: Path) -> Path:
    manifests.write(k8s_support.render_merged("prod"), folder)
    return folder


def test_validate_a_written_set_that_is_valid(kubectl: Kubectl, tmp_path: Path, capsys: Any) -> None:
    folder = _written_prod(tmp_path / "set")
    k8s_cli.validate(context(), env="prod", dir=str(folder))
    objects = sum(len(documents) for documents in manifests.read(folder).values())
    assert _lines(capsys.readouterr().out) == [f"prod: {objects} objects, Kubernetes 1.30.0, 1.33.0, 1.37.0: valid"]


def test_validate_a_written_set_with_a_planted_problem_exits_1_naming_the_object(
    kubectl: Kubectl, tmp_path: Path, capsys: Any
) -> None:
    folder = _written_prod(tmp_path / "set")
    documents = list(yaml.safe_load_all((folder / "bot.yaml").read_text()))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = "admin"
    (folder / "bot.yaml").write_text(render.dump(documents))

    assert fails(1, k8s_cli.validate, context(), env="prod", dir=str(folder)) == (
        "error: the manifests of prod are not valid"
    )
    said = _lines(capsys.readouterr().out)
    assert (
        said[0]
        == "prod: bot.yaml: Deployment/bot: container bot: livenessProbe names port 'admin', which it does not have"
    )
    assert said[1].endswith(": 1 problems") and len(said) == 2


def test_validate_json_says_each_sets_problems(kubectl: Kubectl, tmp_path: Path, capsys: Any) -> None:
    folder = _written_prod(tmp_path / "set")
    (folder / "stray.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stray\n  namespace: x\n")
    with pytest.raises(Exit) as failed:
        k8s_cli.validate(context(), env="prod", dir=str(folder), json=True)
    assert failed.value.code == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is False and printed["versions"] == list(checks.VERSIONS)
    problems = printed["sets"]["prod"]["problems"]
    assert any(p.startswith("kustomization.yaml: Kustomization: resources ") for p in problems)
    assert "stray.yaml: ConfigMap/stray: namespace 'x', not 'analyticbot'" in problems


def test_validate_a_folder_needs_the_environment(kubectl: Kubectl, tmp_path: Path) -> None:
    assert fails(2, k8s_cli.validate, context(), dir=str(tmp_path)) == (
        "error: --dir needs --env: the environment says which Secrets exist and the namespace"
    )


def test_validate_a_folder_that_is_not_there_is_bad_input(kubectl: Kubectl, tmp_path: Path) -> None:
    message = fails(2, k8s_cli.validate, context(), env="prod", dir=str(tmp_path / "none"))
    assert message == f"error: {tmp_path / 'none'} is not a folder of manifests; render one with `invoke k8s.render`"


# --- secrets ----------------------------------------------------------------------------------------------------


def _plant(tmp_path: Path) -> dict[Path, str]:
    """Every file the Secrets are made of, each with a distinctive value (the fixture points SECRETS_DIR and
    TLS_DIR here)."""
    secrets_dir, tls_dir = tmp_path / "secrets", tmp_path / "tls"
    files = [secrets_dir / n for n in sorted({n for s in model.SERVICES for n in s.secrets})]
    files += [tls_dir / tls_layout.FULLCHAIN, tls_dir / tls_layout.PRIVKEY]
    files += [secrets_dir / backup_tls.FOLDER / f"{w}.{e}" for w in ("ca", *backup_tls.PEERS) for e in ("crt", "key")]
    planted = {}
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        planted[path] = f"planted-{random.token_hex(12)}"
        path.write_text(planted[path])
        path.chmod(0o600)
    return planted


def _encoded(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def test_secrets_prints_one_kubectl_pipeline_per_secret_with_paths_and_no_value(
    kubectl: Kubectl, tmp_path: Path, capsys: Any
) -> None:
    planted = _plant(tmp_path)
    k8s_cli.secrets_commands(context(), env="prod")
    said = _lines(capsys.readouterr().out)
    folders = {"SECRETS_DIR": str(tmp_path / "secrets"), "TLS_DIR": str(tmp_path / "tls")}
    objects = manifests.secret_objects(k8s_support.stack("prod", overrides=folders))
    assert len(said) == len(objects) == len({n for s in model.SERVICES for n in s.secrets}) + 2
    for line, secret in zip(said, objects, strict=True):
        assert line.startswith(f"kubectl create secret {secret.type} {secret.name} --namespace analyticbot ")
        assert line.endswith(" --dry-run=client --output=yaml | kubectl apply -f -")
        for _, path in secret.keys:
            assert str(path) in line, (secret.name, path)
    text = "\n".join(said)
    assert f"--from-file=postgres_password={tmp_path}/secrets/postgres_password" in text
    assert f"--cert={tmp_path}/tls/fullchain.pem --key={tmp_path}/tls/privkey.pem" in text
    assert not [value for value in planted.values() if value in text or _encoded(value) in text]
    assert kubectl.kubectl() == []  # printed, not run


def test_secrets_apply_without_kubectl_is_one_line_code_2(
    kubectl: Kubectl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plant(tmp_path)
    real = k8s_cli.shutil.which
    monkeypatch.setattr(k8s_cli.shutil, "which", lambda name, *a, **k: None if name == "kubectl" else real(name))
    message = fails(2, k8s_cli.secrets_commands, context(), env="prod", apply=True)
    assert message == "error: kubectl is not installed; run the printed commands where it is (invoke k8s.secrets)"
    assert kubectl.calls == []


def test_secrets_apply_with_a_file_missing_names_it_and_runs_nothing(
    kubectl: Kubectl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plant(tmp_path)
    (tmp_path / "tls" / tls_layout.PRIVKEY).unlink()
    real = k8s_cli.shutil.which
    monkeypatch.setattr(k8s_cli.shutil, "which", lambda name, *a, **k: KUBECTL if name == "kubectl" else real(name))
    message = fails(2, k8s_cli.secrets_commands, context(), env="prod", apply=True)
    assert message == (
        f"error: missing for the Secrets: {tmp_path}/tls/privkey.pem; run `invoke secrets.init --env prod`"
    )
    assert kubectl.kubectl() == []


def test_secrets_apply_passes_each_secret_through_stdin_never_an_argument(
    kubectl: Kubectl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    planted = _plant(tmp_path)
    real = k8s_cli.shutil.which
    monkeypatch.setattr(k8s_cli.shutil, "which", lambda name, *a, **k: KUBECTL if name == "kubectl" else real(name))
    k8s_cli.secrets_commands(context(), env="prod", apply=True)

    calls = kubectl.kubectl()
    creates, applies = calls[0::2], calls[1::2]
    assert len(creates) == len(applies) == len({n for s in model.SERVICES for n in s.secrets}) + 2
    assert all(c.argv[1:3] == ("create", "secret") and c.input is None for c in creates)
    assert all(a.argv == ("kubectl", "apply", "-f", "-") for a in applies)
    for create, apply in zip(creates, applies, strict=True):
        # What kubectl printed for the Secret is what the next kubectl reads on stdin.
        sent = yaml.safe_load(apply.input)
        assert sent["metadata"]["name"] == create.argv[4] and isinstance(apply.input, bytes)
    every_value = {_encoded(v) for v in planted.values()} | set(planted.values())
    sent_values = {v for a in applies for v in yaml.safe_load(a.input)["data"].values()}
    assert {_encoded(planted[tmp_path / "secrets" / "jwt_secret_key"]),
            _encoded(planted[tmp_path / "tls" / tls_layout.PRIVKEY])} <= sent_values  # fmt: skip
    assert not [arg for call in calls for arg in call.argv if any(v in arg for v in every_value)]
    said = capsys.readouterr()
    assert not [v for v in every_value if v in said.out or v in said.err]
    assert "analyticbot/jwt-secret-key" in said.err
