"""The deploy manifests, checked offline (issue 13): Docker and Kubernetes cannot run here,
so `deploy/compose.yaml` is validated against the Compose specification (the schema
check-jsonschema ships), `deploy/kubernetes/estatedesk.yaml` against the Kubernetes API
schemas (kubernetes-validate ships them), and both, with the Dockerfile and the NATS Helm
values, against what EstateDesk needs: every command one the CLI knows, two replicas,
probes on /healthz, resource requests, a PodDisruptionBudget, a non-root user."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

from estatedesk.cli import build_parser
from shared.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.31"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def kubernetes_documents() -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "estatedesk.yaml").read_text()) if d]


def test_compose_file_is_valid_against_the_compose_specification():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(DEPLOY / "compose.yaml")], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_three_nats_nodes_postgres_two_replicas_of_each_service_and_the_rest():
    services = compose()["services"]
    nats = [name for name, s in services.items() if s.get("image", "").startswith("nats:")]
    assert len(nats) == 3
    for name in nats:  # one cluster: each node routes to all three
        command = services[name]["command"]
        assert command[command.index("--cluster_name") + 1] == "estatedesk" and "-js" in command
        assert command[command.index("--routes") + 1].count("nats://") == 3
    assert services["postgres"]["image"].startswith("postgres:")
    parser = build_parser()
    for name in SERVICES:
        service = services[name]
        assert service["deploy"]["replicas"] == 2
        assert service["environment"]["ESTATEDESK_NATS_REPLICAS"] == "3"
        assert service["environment"]["ESTATEDESK_NATS_URL"].count("nats://") == 3
        assert parser.parse_args(service["command"]).service == name  # a command the CLI has
        assert "/healthz" in " ".join(service["healthcheck"]["test"])
    parser.parse_args(services["migrate"]["command"])
    assert {"console", "prometheus", "grafana"} <= set(services)
    assert services["console"]["environment"]["ESTATEDESK_NATS_URL"].count("nats://") == 3  # live lists
    assert (DEPLOY / "grafana" / "estatedesk.json").exists()
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert {job["job_name"] for job in prometheus["scrape_configs"]} >= set(SERVICES)


def test_kubernetes_manifests_are_valid_against_the_api_schemas():
    documents = kubernetes_documents()
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kubernetes_a_deployment_with_probes_resources_and_a_budget_per_service():
    documents = kubernetes_documents()
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    budgets = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    parser = build_parser()
    for name in (*SERVICES, "console"):
        deployment = deployments[name]
        spec = deployment["spec"]
        assert spec["replicas"] >= 2
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        port = container["ports"][0]["containerPort"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": port}
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        if name in SERVICES:
            assert parser.parse_args(container["args"]).service == name
        labels = spec["template"]["metadata"]["labels"]
        assert any(all(labels.get(k) == v for k, v in b["spec"]["selector"]["matchLabels"].items()) for b in budgets), name


def test_nats_helm_values_ask_for_a_three_node_jetstream_cluster():
    values = yaml.safe_load((DEPLOY / "kubernetes" / "nats-values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["jetstream"]["fileStore"]["pvc"]["enabled"] is True


def test_dockerfile_is_multi_stage_and_runs_as_a_non_root_user():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.MULTILINE | re.IGNORECASE)
    assert len(stages) >= 2 and stages[-1][1] == ""  # build stages, then the runtime
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and not users[-1].startswith(("0", "root"))
    assert re.search(r'^ENTRYPOINT \["estatedesk"\]', text, flags=re.MULTILINE)
    for copied in re.findall(r"^COPY (?!--from)(\S+)", text, flags=re.MULTILINE):
        assert (ROOT / copied.rstrip("/")).exists(), copied  # every source the build copies exists


def test_manifests_hold_no_secret():
    """Secrets come from the operator: compose interpolates required variables, the
    Kubernetes Deployments read a Secret made out of band (none is committed)."""
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SIGNING_KEY", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), (name, key)
            if key.endswith("DATABASE_URL"):  # postgresql://user:${POSTGRES_PASSWORD:?…}@host/db
                assert "${POSTGRES_PASSWORD:?" in value, (name, key)
    documents = kubernetes_documents()
    assert not [d for d in documents if d["kind"] == "Secret"]
    for document in documents:
        for container in document.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for variable in container.get("env", []):
                if re.search(r"KEY|PASSWORD|DATABASE_URL", variable["name"]):
                    assert "secretKeyRef" in variable.get("valueFrom", {}), variable
