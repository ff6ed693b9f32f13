"""Offline checks of the Helm chart in deploy/helm/rmm-stream.

Everything runs through the repo's pinned helm (``scripts/helm``) and needs no
cluster. The whole module is skipped only when ``scripts/helm`` is absent.

What is checked, and how:

* ``helm lint --strict`` on the default values, every ``ci/*.yaml`` values
  file and ``deploy/helm/examples/eventhubs.yaml`` (values.schema.json
  included).
* By schema, core kinds (Deployment, Service, ServiceAccount, ConfigMap,
  PodDisruptionBudget, HorizontalPodAutoscaler, NetworkPolicy): every rendered
  object is validated with ``kubernetes-validate`` against the bundled
  Kubernetes ``K8S_VERSION`` schemas in strict mode (unknown fields fail).
* By schema, CRD kinds (ServiceMonitor, PrometheusRule, ScaledObject): the
  ``openAPIV3Schema`` of the published CRDs vendored in ``tests/helm/crds/``
  (see its README for versions), made strict: an object schema with
  ``properties`` rejects unknown fields unless it preserves them. NOT checked
  for these kinds: the CEL rules (``x-kubernetes-validations``), the
  operators' admission webhooks, ``metadata`` beyond the name (the CRD schema
  leaves it open), and PromQL syntax (no PromQL parser offline; the metric
  names used are checked against the application's list instead).
* Structurally (plain assertions over the rendered YAML): pod/container
  security context, probes, the /tmp emptyDir, credentials only as
  ``secretKeyRef`` (no Secret object, no secret value anywhere), the checksum
  annotations (a setting or rule change rolls the pods, an exclusions change
  does not), the projected config volume (no ``subPath``, so exclusions
  reload in place), NOTES warnings for replicas above ``partitions`` (NOTES is
  rendered by wrapping NOTES.txt in a throw-away template in a copy of the
  chart: ``helm install --dry-run=client`` still wants a reachable cluster),
  the HPA/KEDA exclusion, labels, the Grafana dashboard, and that every key
  in values.yaml is commented and described by values.schema.json.
* Against the application: the files of several renders, laid out as the
  projected volume mounts them, load with the application's own loaders
  (``stream.config.load_config_file`` refuses unknown keys, the rules and
  exclusions loaders, list files included); every metric the alerts and the
  dashboard use is defined in ``stream/metrics.py``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / "scripts" / "helm"
CHART = REPO / "deploy" / "helm" / "rmm-stream"
CI_DIR = CHART / "ci"
EXAMPLE = REPO / "deploy" / "helm" / "examples" / "eventhubs.yaml"
CRD_DIR = Path(__file__).resolve().parent / "crds"

# Kubernetes schema version for kubernetes-validate (must be one it bundles).
K8S_VERSION = "1.33.0"
RELEASE = "t"
NAMESPACE = "security"

pytestmark = pytest.mark.skipif(
    not HELM.is_file(), reason=f"{HELM.relative_to(REPO)} is absent: no pinned helm to run"
)

CORE_KINDS = {
    "Deployment",
    "Service",
    "ServiceAccount",
    "ConfigMap",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
}
CRD_FILES = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
    "ScaledObject": "keda.sh_scaledobjects.yaml",
}

# Metrics the alerts and the dashboard may use: what stream/metrics.py defines
# (a Counter "x" is exported as x_total), read from its source so that this
# module needs no application imports.
_METRIC_RE = re.compile(r'\b(Counter|Gauge|Histogram)\(\s*"(rmm_stream_\w+)"')


def _app_metrics() -> tuple[set[str], set[str]]:
    path = REPO / "stream" / "metrics.py"
    source = path.read_text() if path.is_file() else ""
    found = _METRIC_RE.findall(source)
    names = {f"{n}_total" if kind == "Counter" else n for kind, n in found}
    return names, {n for kind, n in found if kind == "Histogram"}


APP_METRICS, HISTOGRAMS = _app_metrics()
# The metrics the issue names for the alerts and the dashboard.
REQUIRED_METRICS = {
    "rmm_stream_records_total",
    "rmm_stream_messages_total",
    "rmm_stream_bad_records_total",
    "rmm_stream_alerts_total",
    "rmm_stream_excluded_total",
    "rmm_stream_event_lag_seconds",
    "rmm_stream_batch_seconds",
    "rmm_stream_store_seconds",
    "rmm_stream_store_errors_total",
    "rmm_stream_consumer_lag",
    "rmm_stream_commit_seconds",
    "rmm_stream_outbox_depth",
    "rmm_stream_last_event_timestamp_seconds",
}

SECRET_ENV = {
    "RMM_STREAM_SASL_PASSWORD",
    "RMM_STREAM_EVENTHUB_CONNECTION_STRING",
    "RMM_STREAM_REDIS_PASSWORD",
}


def values_file(path: Path) -> list[str]:
    return ["-f", str(path)]


def sets(*assignments: str) -> list[str]:
    """--set a=b --set c=d ..."""
    return [arg for a in assignments for arg in ("--set", a)]


# Named renders: every one is linted-by-render, schema-validated and
# structurally checked.
CASES: dict[str, list[str]] = {
    "default": [],
    **{f"ci/{p.name}": values_file(p) for p in sorted(CI_DIR.glob("*.yaml"))},
    "examples/eventhubs.yaml": values_file(EXAMPLE),
    "hpa": sets(
        "autoscaling.enabled=true",
        "autoscaling.targetMemoryUtilizationPercentage=80",
        "podDisruptionBudget.enabled=true",
        "podDisruptionBudget.minAvailable=50%",
    ),
    "eventhub-native": sets(
        "config.settings.source=eventhub",
        "config.settings.eventhub_name=defender-streaming-export",
        "config.settings.eventhub_consumer_group=rmm-stream",
        "secrets.existingSecret=rmm-stream-eventhubs",
        "secrets.saslPassword.key=",
        "secrets.eventhubConnectionString.optional=false",
    ),
    "existing-configmaps": [
        *sets(
            "config.existingConfigMap=my-settings",
            "rules.existingConfigMap=my-rules",
            "exclusions.existingConfigMap=my-exclusions",
            "exclusions.key=excl.yaml",
        ),
        "--set-json",
        'rules.existingConfigMapKeys=["splashtop.yaml","anydesk.yaml"]',
    ],
    "keda-kafka": [
        *values_file(CI_DIR / "kafka-values.yaml"),
        *sets(
            "keda.enabled=true",
            "keda.trigger.type=kafka",
            "keda.trigger.kafka.authenticationRef=rmm-stream-kafka",
            "keda.maxReplicaCount=6",
        ),
    ],
}


# --------------------------------------------------------------------------
# helm plumbing


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HELM), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,  # the first call may build helm from source
        check=False,
    )


@pytest.fixture(scope="session", autouse=True)
def _helm_ready() -> None:
    """Build/locate the pinned helm once, before any timed test."""
    if not HELM.is_file():
        return
    r = run_helm("version", "--short")
    assert r.returncode == 0, f"scripts/helm version failed:\n{r.stderr}"


@functools.cache
def _template(chart: str, args: tuple[str, ...]) -> tuple[int, str, str]:
    r = run_helm(
        "template", RELEASE, chart, "--namespace", NAMESPACE, "--kube-version", K8S_VERSION, *args
    )
    return r.returncode, r.stdout, r.stderr


def render(*args: str, chart: Path = CHART) -> list[dict[str, Any]]:
    code, out, err = _template(str(chart), tuple(args))
    assert code == 0, f"helm template {' '.join(args)} failed:\n{err}"
    return [d for d in yaml.safe_load_all(out) if d]


def render_error(*args: str) -> str:
    code, _, err = _template(str(CHART), tuple(args))
    assert code != 0, f"helm template {' '.join(args)} unexpectedly succeeded"
    return err


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def config_map(docs: list[dict[str, Any]], suffix: str) -> dict[str, str]:
    """data of the chart's ConfigMap <release>-rmm-stream-<suffix>."""
    return one(docs, "ConfigMap", f"{RELEASE}-rmm-stream-{suffix}")["data"]


def settings_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rendered config.yaml, parsed."""
    return yaml.safe_load(config_map(docs, "config")["config.yaml"])


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


# --------------------------------------------------------------------------
# chart metadata


def test_app_version_matches_package_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert str(chart["appVersion"]) == project["version"], (
        "Chart.yaml appVersion must equal pyproject.toml [project] version"
    )


def test_application_exports_the_metrics_the_chart_uses() -> None:
    missing = REQUIRED_METRICS - APP_METRICS
    assert not missing, f"stream/metrics.py no longer defines {sorted(missing)}"


# Renders whose files are loaded with the application's own loaders below.
# "eventhub-native" is left out: its eventhub_* options belong to the native
# Event Hubs source; "existing-configmaps" renders no files.
APP_LOAD_CASES = [
    "default",
    "ci/kafka-values.yaml",
    "ci/eventhub-values.yaml",
    "ci/all-values.yaml",
    "examples/eventhubs.yaml",
]


def materialize(docs: list[dict[str, Any]], root: Path) -> Path:
    """Lay out /etc/rmm-stream as the pod sees it: the Deployment's projected
    volume, filled from the rendered ConfigMaps. Returns the directory."""
    maps = {d["metadata"]["name"]: d.get("data") or {} for d in by_kind(docs, "ConfigMap")}
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (mount,) = [
        m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/etc/rmm-stream"
    ]
    (vol,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    for src in vol["projected"]["sources"]:
        data = maps[src["configMap"]["name"]]
        for item in src["configMap"]["items"]:
            target = root / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
    return root


@pytest.mark.parametrize("case", APP_LOAD_CASES)
def test_rendered_files_load_in_the_application(case: str, tmp_path: Path) -> None:
    """config.yaml, the rules and the exclusions (with their list files), as mounted,
    are accepted by the application's own loaders."""
    from stream.config import load_config_file
    from stream.exclusions.loader import read_exclusions
    from stream.rules.loader import load_rules

    etc = materialize(render(*CASES[case]), tmp_path)
    cfg = load_config_file(str(etc / "config.yaml"))  # refuses unknown keys
    if cfg["rules"] == "/etc/rmm-stream/rules/":
        rules = load_rules([etc / "rules"])
    else:  # the image's seed rules: the repo's config/rules
        assert cfg["rules"] == "/opt/rmm-stream/config/rules/"
        rules = load_rules([REPO / "config" / "rules"])
    assert rules
    assert cfg["exclusions"] == "/etc/rmm-stream/exclusions.yaml"
    exclusions = read_exclusions(etc / "exclusions.yaml", [r.id for r in rules])
    if case == "ci/all-values.yaml":
        assert (etc / "lists" / "jump-hosts.txt").is_file()
        assert len(exclusions) == 1


def _leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        out = []
        for k, v in node.items():
            out.extend(_leaf_paths(v, (*prefix, k)))
        return out
    return [prefix]


def test_every_value_is_in_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    missing = []
    for path in _leaf_paths(values):
        node = schema
        for key in path:
            props = node.get("properties", {})
            if key in props:
                node = props[key]
            elif isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
            elif "properties" not in node and node.get("additionalProperties", True) is not False:
                break  # an open object: a Kubernetes type passed through as is
            else:
                missing.append(".".join(path))
                break
    assert not missing, f"values.yaml keys not described by values.schema.json: {missing}"


def test_every_value_is_commented() -> None:
    """values.yaml is documented key by key: a key has a comment on the line above or
    on its own line, or sits inside a documented block. A section key (one whose
    children are keys) may go without, as long as its children are documented."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    key_re = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*):(.*)$")
    undocumented = []
    parents: list[tuple[int, bool]] = []  # (indent, documented) of enclosing keys
    for i, line in enumerate(lines):
        m = key_re.match(line)
        if not m:
            continue
        indent, rest = len(m.group(1)), m.group(3)
        while parents and parents[-1][0] >= indent:
            parents.pop()
        own = (i > 0 and lines[i - 1].strip().startswith("#")) or "#" in rest
        documented = own or any(doc for _, doc in parents)
        following = next(
            (ln for ln in lines[i + 1 :] if ln.strip() and not ln.strip().startswith("#")), ""
        )
        child = key_re.match(following)
        is_section = not rest.strip() and child is not None and len(child.group(1)) > indent
        if not documented and not is_section:
            undocumented.append(f"line {i + 1}: {line.strip()}")
        parents.append((indent, documented))
    assert not undocumented, "undocumented keys in values.yaml:\n" + "\n".join(undocumented)


# --------------------------------------------------------------------------
# lint


LINT_CASES = {
    "default": [],
    **{f"ci/{p.name}": values_file(p) for p in sorted(CI_DIR.glob("*.yaml"))},
    "examples/eventhubs.yaml": values_file(EXAMPLE),
}


def test_ci_values_files_exist() -> None:
    names = {p.name for p in CI_DIR.glob("*.yaml")}
    assert {"kafka-values.yaml", "eventhub-values.yaml", "all-values.yaml"} <= names


@pytest.mark.parametrize("case", sorted(LINT_CASES))
def test_helm_lint_strict(case: str) -> None:
    r = run_helm("lint", "--strict", str(CHART), *LINT_CASES[case])
    assert r.returncode == 0, f"helm lint --strict ({case}) failed:\n{r.stdout}\n{r.stderr}"
    assert "0 chart(s) failed" in r.stdout


# --------------------------------------------------------------------------
# schemas


def test_kubernetes_validate_has_pinned_version() -> None:
    from kubernetes_validate import utils

    assert K8S_VERSION in utils.all_versions()


@pytest.mark.parametrize("case", sorted(CASES))
def test_core_kinds_validate_against_kubernetes_schemas(case: str) -> None:
    import kubernetes_validate

    docs = render(*CASES[case])
    unknown = {d["kind"] for d in docs} - CORE_KINDS - set(CRD_FILES)
    assert not unknown, f"kinds with no schema check: {unknown}"
    for doc in docs:
        if doc["kind"] not in CORE_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            pytest.fail(f"{case}: {doc['kind']}/{doc['metadata']['name']} at {path}: {exc.message}")


def _strict_openapi(schema: Any) -> Any:
    """openAPIV3Schema (structural) -> JSON Schema that rejects unknown fields."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: _strict_openapi(sub) for name, sub in value.items()}
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _strict_openapi(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_strict_openapi(sub) for sub in value]
        elif key.startswith("x-kubernetes-") or key == "nullable":
            continue
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_validator(kind: str) -> tuple[str, Any]:
    import jsonschema

    crd = yaml.safe_load((CRD_DIR / CRD_FILES[kind]).read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    schema = _strict_openapi(version["schema"]["openAPIV3Schema"])
    api_version = f"{crd['spec']['group']}/{version['name']}"
    return api_version, jsonschema.Draft7Validator(schema)


CRD_CASES = {
    "ci/all-values.yaml": {"ServiceMonitor", "PrometheusRule", "ScaledObject"},
    "ci/eventhub-values.yaml": {"ServiceMonitor"},
    "examples/eventhubs.yaml": {"ServiceMonitor", "PrometheusRule"},
    "keda-kafka": {"ScaledObject"},
}


@pytest.mark.parametrize("case", sorted(CRD_CASES))
def test_crd_kinds_validate_against_published_crd_schemas(case: str) -> None:
    docs = render(*CASES[case])
    seen = set()
    for doc in docs:
        if doc["kind"] not in CRD_FILES:
            continue
        seen.add(doc["kind"])
        api_version, validator = crd_validator(doc["kind"])
        assert doc["apiVersion"] == api_version
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", doc["metadata"]["name"])
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, f"{case}: {doc['kind']}: " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors
        )
    assert seen == CRD_CASES[case]


def test_crd_check_is_not_vacuous() -> None:
    """The strict CRD schema really rejects an unknown field and a bad duration."""
    docs = render(*CASES["ci/all-values.yaml"])
    _, validator = crd_validator("ServiceMonitor")
    sm = copy.deepcopy(one(docs, "ServiceMonitor"))
    sm["spec"]["endpoints"][0]["intervall"] = "30s"
    assert not validator.is_valid(sm)
    sm = copy.deepcopy(one(docs, "ServiceMonitor"))
    sm["spec"]["endpoints"][0]["interval"] = "thirty seconds"
    assert not validator.is_valid(sm)


# --------------------------------------------------------------------------
# structure: security, probes, volumes


@pytest.mark.parametrize("case", sorted(CASES))
def test_pod_security(case: str) -> None:
    docs = render(*CASES[case])
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert 30 <= pod["terminationGracePeriodSeconds"] <= 60
    c = container(docs)
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not sc.get("privileged")
    # The only writable path: an emptyDir at /tmp.
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert mounts["/etc/rmm-stream"].get("readOnly") is True


@pytest.mark.parametrize("case", sorted(CASES))
def test_probes_and_ports(case: str) -> None:
    docs = render(*CASES[case])
    c = container(docs)
    (port,) = c["ports"]
    assert port["name"] == "http"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["args"][:3] == ["run", "--config", "/etc/rmm-stream/config.yaml"]
    if "config.existingConfigMap=my-settings" not in CASES[case]:
        assert settings_of(docs)["http_port"] == port["containerPort"]
    svc = one(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert svc["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]


def test_http_port_follows_the_setting() -> None:
    docs = render("--set", "config.settings.http_port=9102")
    assert container(docs)["ports"][0]["containerPort"] == 9102
    cfg = settings_of(docs)
    assert cfg["http_port"] == 9102


def test_config_volume_is_projected_without_subpath() -> None:
    docs = render(*CASES["ci/kafka-values.yaml"])
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert all("subPath" not in m for m in c["volumeMounts"]), "subPath mounts never update"
    (config_mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/etc/rmm-stream"]
    (vol,) = [v for v in pod["volumes"] if v["name"] == config_mount["name"]]
    paths = {
        item["path"]: (src["configMap"]["name"], item["key"])
        for src in vol["projected"]["sources"]
        for item in src["configMap"]["items"]
    }
    assert paths == {
        "config.yaml": (f"{RELEASE}-rmm-stream-config", "config.yaml"),
        "exclusions.yaml": (f"{RELEASE}-rmm-stream-exclusions", "exclusions.yaml"),
        "rules/splashtop.yaml": (f"{RELEASE}-rmm-stream-rules", "splashtop.yaml"),
    }
    cfg = settings_of(docs)
    assert cfg["rules"] == "/etc/rmm-stream/rules/"
    assert cfg["exclusions"] == "/etc/rmm-stream/exclusions.yaml"
    rule = yaml.safe_load(config_map(docs, "rules")["splashtop.yaml"])
    assert rule["table"] == "DeviceNetworkEvents"


def test_existing_configmaps_are_used_by_name() -> None:
    docs = render(*CASES["existing-configmaps"])
    assert not by_kind(docs, "ConfigMap"), "no ConfigMap is rendered when all three exist"
    vol = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
    paths = {
        item["path"]: (src["configMap"]["name"], item["key"])
        for src in vol["projected"]["sources"]
        for item in src["configMap"]["items"]
    }
    assert paths == {
        "config.yaml": ("my-settings", "config.yaml"),
        "exclusions.yaml": ("my-exclusions", "excl.yaml"),
        "rules/splashtop.yaml": ("my-rules", "splashtop.yaml"),
        "rules/anydesk.yaml": ("my-rules", "anydesk.yaml"),
    }


def test_default_uses_image_rules_and_omits_empty_settings() -> None:
    docs = render()
    assert not [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-rules")]
    cfg = settings_of(docs)
    assert cfg["rules"] == "/opt/rmm-stream/config/rules/"
    assert cfg["source"] == "kafka"
    # "" means "application default": such keys are left out of config.yaml.
    assert "sasl_mechanism" not in cfg and "profile" not in cfg
    assert all(v not in ("", None, []) for v in cfg.values())


def test_eventhubs_kafka_endpoint_settings() -> None:
    for case in ("ci/eventhub-values.yaml", "examples/eventhubs.yaml"):
        docs = render(*CASES[case])
        cfg = settings_of(docs)
        assert re.fullmatch(r"[a-z0-9-]+\.servicebus\.windows\.net:9093", cfg["bootstrap_servers"])
        assert cfg["security_protocol"] == "SASL_SSL"
        assert cfg["sasl_mechanism"] == "PLAIN"
        assert cfg["sasl_username"] == "$ConnectionString"
        assert cfg["profile"] == "eventhubs"
        env = {e["name"]: e for e in container(docs)["env"]}
        ref = env["RMM_STREAM_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "rmm-stream-eventhubs" and ref["optional"] is False


# --------------------------------------------------------------------------
# structure: secrets


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_secret_values_rendered(case: str) -> None:
    docs = render(*CASES[case])
    assert not by_kind(docs, "Secret"), "the chart must never create a Secret"
    for e in container(docs)["env"]:
        if e["name"] in SECRET_ENV or re.search("PASSWORD|CONNECTION_STRING|SECRET", e["name"]):
            assert "value" not in e, f"{e['name']} has a literal value"
            assert set(e["valueFrom"]) == {"secretKeyRef"}
    for cm in by_kind(docs, "ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            assert "SharedAccessKey=" not in text, f"{cm['metadata']['name']}/{key}"
            if key == "config.yaml":
                cfg = yaml.safe_load(text)
                forbidden = {"sasl_password", "eventhub_connection_string", "redis_password"}
                assert not forbidden & set(cfg)
                assert not re.search(r"://[^/@]*:[^/@]+@", str(cfg.get("store", "")))


def test_credentials_come_from_secret_key_refs() -> None:
    docs = render(*CASES["ci/kafka-values.yaml"])
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container(docs)["env"]
        if "valueFrom" in e
    }
    assert env["RMM_STREAM_SASL_PASSWORD"] == {
        "name": "rmm-stream-kafka",
        "key": "password",
        "optional": False,
    }
    # A per-credential secretName overrides secrets.existingSecret.
    assert env["RMM_STREAM_REDIS_PASSWORD"] == {
        "name": "redis",
        "key": "redis-password",
        "optional": False,
    }
    # key: "" switches a credential off.
    assert "RMM_STREAM_EVENTHUB_CONNECTION_STRING" not in env


def test_no_credential_env_without_a_secret() -> None:
    names = {e["name"] for e in container(render())["env"]}
    assert not names & SECRET_ENV


def test_native_eventhub_connection_string_from_secret() -> None:
    docs = render(*CASES["eventhub-native"])
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["RMM_STREAM_EVENTHUB_CONNECTION_STRING"]["valueFrom"]["secretKeyRef"] == {
        "name": "rmm-stream-eventhubs",
        "key": "eventhub-connection-string",
        "optional": False,
    }
    assert "RMM_STREAM_SASL_PASSWORD" not in env


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "config.settings.sasl_password=hunter2"],
        ["--set", "config.settings.redis_password=hunter2"],
        ["--set", "config.settings.eventhub_connection_string=Endpoint=sb://x/"],
    ],
    ids=["sasl_password", "redis_password", "eventhub_connection_string"],
)
def test_secret_values_in_settings_are_refused(args: list[str]) -> None:
    err = render_error(*args)
    key = args[1].split("=")[0].removeprefix("config.settings.")
    assert f"config.settings.{key}: secret values do not belong in values" in err
    assert "hunter2" not in err


def test_password_in_redis_url_is_refused() -> None:
    err = render_error("--set", "config.settings.store=redis://:hunter2@redis:6379/0")
    assert "contains a password" in err
    assert "hunter2" not in err.replace("redis://:hunter2@redis:6379/0", "")


# --------------------------------------------------------------------------
# structure: checksum annotations


def _annotations(*args: str) -> dict[str, str]:
    return one(render(*args), "Deployment")["spec"]["template"]["metadata"]["annotations"]


def test_checksum_changes_with_settings_and_rules_not_exclusions() -> None:
    base = _annotations()
    assert re.fullmatch(r"[0-9a-f]{64}", base["checksum/config"])
    setting = _annotations("--set", "config.settings.log_level=DEBUG")
    assert setting["checksum/config"] != base["checksum/config"]
    rules = _annotations("--set-string", "rules.files.extra\\.yaml=id: x")
    assert rules["checksum/rules"] != base["checksum/rules"]

    new_exclusions = "exclusions:\n  - rule: '*'\n    DeviceName: jump-host-01\n"
    excl_args = ("--set-string", f"exclusions.content={new_exclusions}")
    excluded = _annotations(*excl_args)
    assert excluded == base, "an exclusions change must not roll the pods"
    # ...while the exclusions ConfigMap itself did change (the test is not vacuous).
    before = config_map(render(), "exclusions")
    after = config_map(render(*excl_args), "exclusions")
    assert before != after and "jump-host-01" in after["exclusions.yaml"]
    # List files belong to the exclusions too.
    lists = _annotations("--set-string", "exclusions.listFiles.hosts\\.txt=jump-01")
    assert lists == base


def test_exclusion_list_files_from_an_existing_configmap() -> None:
    docs = render(
        *sets("exclusions.existingConfigMap=secops-exclusions"),
        "--set-json",
        'exclusions.existingConfigMapListKeys=["jump-hosts.txt"]',
    )
    vol = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
    (src,) = [
        s for s in vol["projected"]["sources"] if s["configMap"]["name"] == "secops-exclusions"
    ]
    assert src["configMap"]["items"] == [
        {"key": "exclusions.yaml", "path": "exclusions.yaml"},
        {"key": "jump-hosts.txt", "path": "lists/jump-hosts.txt"},
    ]


# --------------------------------------------------------------------------
# structure: autoscaling, NOTES


def test_hpa_and_keda_are_mutually_exclusive() -> None:
    err = render_error("--set", "autoscaling.enabled=true", "--set", "keda.enabled=true")
    assert "autoscaling.enabled and keda.enabled are mutually exclusive" in err


def test_autoscaler_owns_replicas() -> None:
    assert one(render(), "Deployment")["spec"]["replicas"] == 2
    for case in ("hpa", "ci/all-values.yaml"):
        docs = render(*CASES[case])
        assert "replicas" not in one(docs, "Deployment")["spec"]
    hpa = one(render(*CASES["hpa"]), "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-rmm-stream"


def test_keda_scales_on_consumer_lag() -> None:
    so = one(render(*CASES["ci/all-values.yaml"]), "ScaledObject")
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert "rmm_stream_consumer_lag" in trigger["metadata"]["query"]
    assert f'namespace="{NAMESPACE}"' in trigger["metadata"]["query"]
    so = one(render(*CASES["keda-kafka"]), "ScaledObject")
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "rmm-stream"
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    assert trigger["authenticationRef"] == {"name": "rmm-stream-kafka"}


@pytest.fixture(scope="session")
def notes_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart whose extra template renders NOTES.txt into a ConfigMap."""
    chart = tmp_path_factory.mktemp("notes") / "rmm-stream"
    shutil.copytree(CHART, chart)
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_zz_test_notes.tpl").write_text(
        '{{- define "zz-test.notes" -}}\n' + notes + "\n{{- end -}}\n"
    )
    (chart / "templates" / "zz-test-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "zz-test.notes" . | toJson }}\n'
    )
    return chart


def notes(chart: Path, *args: str) -> str:
    docs = render("--show-only", "templates/zz-test-notes.yaml", *args, chart=chart)
    return docs[0]["data"]["notes"]


def test_notes_warn_when_replicas_exceed_partitions(notes_chart: Path) -> None:
    text = notes(notes_chart, "--set", "replicaCount=6", "--set", "partitions=4")
    assert "WARNING: up to 6 replicas (replicaCount) but only 4 input partitions" in text
    assert "2 replica(s) would" in text
    assert "WARNING" not in notes(notes_chart, "--set", "replicaCount=4", "--set", "partitions=4")


def test_notes_warn_on_autoscaler_ceiling(notes_chart: Path) -> None:
    text = notes(notes_chart, "--set", "keda.enabled=true", "--set", "keda.maxReplicaCount=12")
    assert "up to 12 replicas (keda.maxReplicaCount) but only 4 input partitions" in text
    text = notes(
        notes_chart, "--set", "autoscaling.enabled=true", "--set", "autoscaling.maxReplicas=5"
    )
    assert "up to 5 replicas (autoscaling.maxReplicas) but only 4 input partitions" in text
    # replicaCount is irrelevant while an autoscaler owns the count.
    text = notes(notes_chart, "--set", "autoscaling.enabled=true", "--set", "replicaCount=9")
    assert "input partitions" not in text


def test_notes_for_ci_values_have_no_partition_warning(notes_chart: Path) -> None:
    for case in ("ci/kafka-values.yaml", "ci/eventhub-values.yaml", "ci/all-values.yaml"):
        text = notes(notes_chart, *CASES[case])
        assert "input partitions" not in text, case
        assert "/healthz" in text


def test_notes_warn_about_sasl_without_secret(notes_chart: Path) -> None:
    text = notes(notes_chart, "--set", "config.settings.security_protocol=SASL_SSL")
    assert "no Secret is referenced for the SASL" in text


# --------------------------------------------------------------------------
# structure: labels, monitoring objects, dashboard


@pytest.mark.parametrize("case", sorted(CASES))
def test_standard_labels_everywhere(case: str) -> None:
    for doc in render(*CASES[case]):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "rmm-stream"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert (
            labels["app.kubernetes.io/version"]
            == yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
        )
        assert doc["metadata"].get("namespace") == NAMESPACE


def _promql_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression, histogram series mapped to their histogram."""
    out = set()
    for name in re.findall(r"\b(rmm_stream_[a-z_]+)", expr):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        out.add(base if base in HISTOGRAMS else name)
    return out


def test_prometheus_rule_alerts() -> None:
    rule = one(render(*CASES["ci/all-values.yaml"]), "PrometheusRule")
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    alerts = {r["alert"]: r for r in rules}
    for name in (
        "RmmStreamConsumerLagGrowing",
        "RmmStreamHighErrorRate",
        "RmmStreamNoEventsReceived",
        "RmmStreamRedisErrors",
    ):
        assert name in alerts
    assert "rmm_stream_consumer_lag" in alerts["RmmStreamConsumerLagGrowing"]["expr"]
    assert "rmm_stream_last_event_timestamp_seconds" in alerts["RmmStreamNoEventsReceived"]["expr"]
    assert "rmm_stream_store_errors_total" in alerts["RmmStreamRedisErrors"]["expr"]
    for r in rules:
        used = _promql_metrics(str(r["expr"]))
        assert used <= APP_METRICS, f"{r['alert']}: unknown metric(s) {used - APP_METRICS}"
        assert str(r["expr"]).count("(") == str(r["expr"]).count(")")
        if r["alert"] != "RmmStreamNoAlertsForAWeek":  # from additionalRules in all-values
            assert r["labels"]["severity"]
            assert r["annotations"]["summary"] and r["annotations"]["description"]
            assert r["labels"].get("team") == "secops"  # additionalAlertLabels
            assert r["annotations"]["runbook_url"].startswith("https://wiki.example.internal/")
    # Prometheus' own templating is passed through by Helm, not evaluated.
    assert "{{ $labels.topic }}" in alerts["RmmStreamConsumerLagGrowing"]["annotations"]["summary"]
    assert "RmmStreamNoAlertsForAWeek" in alerts
    assert 'namespace="security"' in alerts["RmmStreamRedisErrors"]["expr"]


def test_alerts_can_be_switched_off() -> None:
    docs = render(
        *sets(
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.alerts.eventLagHigh.enabled=false",
        )
    )
    rules = one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert "RmmStreamEventLagHigh" not in names and "RmmStreamRedisErrors" in names


def test_service_monitor_scrapes_metrics_port() -> None:
    docs = render(*CASES["ci/all-values.yaml"])
    sm = one(docs, "ServiceMonitor")
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "http" and ep["path"] == "/metrics"
    svc = one(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_grafana_dashboard() -> None:
    docs = render(*CASES["ci/all-values.yaml"])
    cm = one(docs, "ConfigMap", f"{RELEASE}-rmm-stream-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = cm["data"].values()
    dash = json.loads(text)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = set().union(*(_promql_metrics(e) for e in exprs))
    assert used <= APP_METRICS, f"unknown metric(s) {used - APP_METRICS}"
    # throughput, lag, alerts, errors, latency
    for metric in (
        "rmm_stream_messages_total",
        "rmm_stream_records_total",
        "rmm_stream_consumer_lag",
        "rmm_stream_event_lag_seconds",
        "rmm_stream_alerts_total",
        "rmm_stream_bad_records_total",
        "rmm_stream_store_errors_total",
        "rmm_stream_batch_seconds",
        "rmm_stream_store_seconds",
    ):
        assert metric in used, metric
    titles = " ".join(p["title"] for p in dash["panels"] if p["type"] == "row").lower()
    for row in ("throughput", "lag", "alerts", "errors", "latency"):
        assert row in titles
    # Off by default.
    names = [d["metadata"]["name"] for d in by_kind(render(), "ConfigMap")]
    assert not [n for n in names if n.endswith("-dashboard")]


def test_network_policy_allows_metrics_and_dns() -> None:
    np_ = one(render(*CASES["ci/all-values.yaml"]), "NetworkPolicy")
    assert set(np_["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert np_["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    egress_ports = {p["port"] for rule in np_["spec"]["egress"] for p in rule["ports"]}
    assert {53, 9093, 6379} <= egress_ports


def test_pdb_selects_the_pods() -> None:
    docs = render(*CASES["ci/all-values.yaml"])
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"] == selector


def test_image_defaults_to_app_version() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert container(render())["image"] == f"rmm-stream:{app_version}"
    img = container(render(*CASES["ci/all-values.yaml"]))["image"]
    assert re.fullmatch(r"[^:]+:[^@]+@sha256:[0-9a-f]{64}", img)


def test_notes_warn_about_memory_store(notes_chart: Path) -> None:
    text = notes(notes_chart, "--set", "config.settings.store=memory")
    assert 'WARNING: store is "memory"' in text
    assert "memory" not in notes(notes_chart).split("Store:")[1].splitlines()[0]
