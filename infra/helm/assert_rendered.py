"""Assertions on a rendered aws-s3-service chart (infra/helm/check.sh).

    python assert_rendered.py RENDER_DIR --istio on|off -f values.yaml -f values-prod.yaml -f overrides.yaml \
        [--set image.tag=abc123] [--release aws-s3-service] [--expect original-defaults|original-readme]

RENDER_DIR is what `helmtool.py template` wrote (k8s/ and istio/). The values files, merged here in order
the simple way (maps deeply, later files winning), then --set (parsed as helm does), say what the render
should contain: the Deployment's resources, the image, the HPA's bounds, the IRSA role, the Secret wiring,
the sources the migration Job applies, the Istio VirtualService timeout/retries, DestinationRule pool and
Gateway servers. --release is the release name the render used: the pods' app.kubernetes.io/name label
stays the chart's name whatever it is. --expect also checks, hard-coded here, the numbers of the service
this chart replaces: its defaults (the defaults render must equal them) or its README's Istio overrides.
Everything else is read back from the rendered objects themselves: probes, security context, the shutdown
timings, the hook order, the Istio objects.
"""

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
ISTIO_PROXY_ANNOTATION = "proxy.istio.io/config"
HOOK = "helm.sh/hook"
HOOK_EVENTS = {"pre-install", "pre-upgrade"}
TMP_DIR = "/tmp"  # noqa: S108 - the container path that must be writable, not a file made here
SOURCES_DIR = "/etc/aws-s3-service/sources"
MIGRATE = ["python", "-m", "app", "migrate"]
SOURCES_APPLY = ["python", "-m", "app", "sources", "apply", SOURCES_DIR]
CHART_NAME = "aws-s3-service"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"

# The service this chart replaces, hard-coded on purpose (the values files could drift with the chart):
# its defaults, which the chart's defaults must equal (Gateway: plain HTTP on port 80), and the Istio
# overrides its README shows (infra/helm/original-istio-values.yaml), which must mean the same here. The
# timeout and retries are the route of the idempotent methods.
ORIGINAL: dict[str, dict[str, Any]] = {
    "original-defaults": {
        "label": "the original's default",
        "timeout": "10s",
        "attempts": 3,
        "retryOn": "5xx,reset,connect-failure",
        "maxConnections": 100,
        "http1MaxPendingRequests": 100,
        "http2MaxRequests": 1000,
        "gateway": [(80, "HTTP")],
    },
    "original-readme": {
        "label": "the original README's override",
        "timeout": "15s",
        "attempts": 5,
        "perTryTimeout": "5s",
        "retryOn": "5xx,reset,connect-failure,retriable-4xx",
        "maxConnections": 200,
        "http1MaxPendingRequests": 200,
        "http2MaxRequests": 2000,
        "hosts": ["your-domain.example.com"],
        "gateway": [(80, "HTTP")],
    },
}


class Checker:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def check(self, condition: object, message: str) -> bool:
        if condition:
            self.passed += 1
        else:
            self.failures.append(message)
        return bool(condition)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_objects(render_dir: Path) -> list[dict[str, Any]]:
    objects = []
    for path in sorted(render_dir.glob("*/*.yaml")):
        objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return objects


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj.get("kind") == kind]


def arg_value(args: list[str], flag: str) -> str | None:
    for index, arg in enumerate(args):
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
    return None


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    return obj.get("metadata", {}).get("annotations") or {}


def is_hook(obj: dict[str, Any]) -> bool:
    return HOOK in annotations_of(obj)


def hook_events(obj: dict[str, Any]) -> set[str]:
    return {event for event in annotations_of(obj).get(HOOK, "").split(",") if event}


def hook_weight(obj: dict[str, Any]) -> int:
    return int(annotations_of(obj).get("helm.sh/hook-weight", "0"))


def delete_policies(obj: dict[str, Any]) -> set[str]:
    policy = annotations_of(obj).get("helm.sh/hook-delete-policy", "")
    return {item for item in policy.split(",") if item}


def check_hardened(c: Checker, spec: dict[str, Any], container: dict[str, Any], where: str) -> None:
    """The pod's and one container's security context, and a writable /tmp on an emptyDir."""
    pod_sc = spec.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    c.check(pod_sc.get("runAsNonRoot") is True, f"{where}: pod securityContext.runAsNonRoot must be true")
    c.check(pod_sc.get("runAsUser") == 1000, f"{where}: pod securityContext.runAsUser must be 1000")
    c.check(sc.get("runAsNonRoot") is True, f"{where}: container securityContext.runAsNonRoot must be true")
    c.check(sc.get("runAsUser") == 1000, f"{where}: container securityContext.runAsUser must be 1000")
    c.check(
        sc.get("readOnlyRootFilesystem") is True, f"{where}: container readOnlyRootFilesystem must be true"
    )
    c.check(
        sc.get("allowPrivilegeEscalation") is False,
        f"{where}: container allowPrivilegeEscalation must be false",
    )
    c.check(sc.get("privileged") in (None, False), f"{where}: container must not be privileged")
    c.check(
        (sc.get("capabilities") or {}).get("drop") == ["ALL"],
        f"{where}: container must drop ALL capabilities",
    )
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    c.check(seccomp == "RuntimeDefault", f"{where}: seccompProfile must be RuntimeDefault, found {seccomp!r}")
    c.check(
        spec.get("automountServiceAccountToken") is False,
        f"{where}: pods must not mount a Kubernetes API token",
    )
    tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
    tmp_mounts = [m for m in container.get("volumeMounts", []) if m.get("mountPath") == TMP_DIR]
    c.check(
        tmp_mounts and tmp_mounts[0]["name"] in tmp_volumes,
        f"{where}: {TMP_DIR} must be an emptyDir (read-only root fs)",
    )


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"([0-9.]+)(ms|h|m|s)", duration)
    return sum(float(number) * units[unit] for number, unit in parts)


def check_deployment(c: Checker, objects: list[dict[str, Any]], values: dict[str, Any]) -> dict[str, Any]:
    deployments = of_kind(objects, "Deployment")
    if not c.check(len(deployments) == 1, f"expected one Deployment, found {len(deployments)}"):
        return {}
    deployment = deployments[0]
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    containers = spec.get("containers", [])
    app = next((item for item in containers if item.get("name") == "app"), None)
    if not c.check(app is not None, "Deployment has no container named app"):
        return {}

    probes = {
        "livenessProbe": "/health",
        "readinessProbe": "/ready",
        "startupProbe": "/health",
    }
    for probe, path in probes.items():
        got = (app.get(probe) or {}).get("httpGet", {}).get("path")
        c.check(got == path, f"{probe} must GET {path}, found {got!r}")

    for container in spec.get("initContainers", []) + containers:
        check_hardened(c, spec, container, f"Deployment container {container.get('name')}")

    c.check(
        app.get("resources") == values["resources"],
        f"resources {app.get('resources')} differ from the values file's {values['resources']}",
    )

    annotations = pod.get("metadata", {}).get("annotations") or {}
    c.check("checksum/config" in annotations, "pod template needs a checksum/config annotation")
    if not values.get("existingSecret"):
        c.check("checksum/secret" in annotations, "pod template needs a checksum/secret annotation")

    c.check(
        spec.get("topologySpreadConstraints") or spec.get("affinity"), "pods need spread or anti-affinity"
    )
    return deployment


def check_shutdown(c: Checker, objects: list[dict[str, Any]], deployment: dict[str, Any]) -> None:
    spec = deployment["spec"]["template"]["spec"]
    app = next(item for item in spec["containers"] if item["name"] == "app")
    command = ((app.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command") or []
    if not c.check(
        len(command) == 2 and command[0] == "sleep", f"preStop must exec sleep N, found {command}"
    ):
        return
    pre_stop = int(command[1])
    http_grace = int(arg_value(app.get("command", []) + app.get("args", []), "--graceful-timeout") or 0)
    config = {}
    for configmap in of_kind(objects, "ConfigMap"):
        if not is_hook(configmap):  # the sources ConfigMap holds source files, not settings
            config.update(configmap.get("data") or {})
    consumer_grace = float(config.get("SHUTDOWN_GRACE_SECONDS", 20))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    needed = pre_stop + http_grace + consumer_grace
    c.check(
        grace > pre_stop + consumer_grace,
        f"terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop}"
        f" + consumer grace {consumer_grace}",
    )
    c.check(
        grace > needed,
        f"terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} + HTTP drain {http_grace}"
        f" + consumer grace {consumer_grace} = {needed}",
    )


def check_wiring(c: Checker, objects: list[dict[str, Any]], deployment: dict[str, Any], values: dict) -> None:
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    app = next(item for item in spec["containers"] if item["name"] == "app")

    accounts = of_kind(objects, "ServiceAccount")
    if c.check(len(accounts) == 1, f"expected one ServiceAccount, found {len(accounts)}"):
        account = accounts[0]
        role = (account["metadata"].get("annotations") or {}).get(IRSA_ANNOTATION)
        c.check(
            role and role == values["serviceAccount"]["roleArn"],
            f"ServiceAccount {IRSA_ANNOTATION}: {role!r}",
        )
        c.check(
            spec.get("serviceAccountName") == account["metadata"]["name"], "pods must use the IRSA account"
        )

    env_from = app.get("envFrom") or []
    configmaps = {o["metadata"]["name"] for o in of_kind(objects, "ConfigMap") if not is_hook(o)}
    refs = [e["configMapRef"]["name"] for e in env_from if "configMapRef" in e]
    c.check(refs and all(ref in configmaps for ref in refs), f"envFrom ConfigMaps {refs} not rendered")
    secret_refs = [e["secretRef"]["name"] for e in env_from if "secretRef" in e]
    secrets = {o["metadata"]["name"] for o in of_kind(objects, "Secret") if "helm.sh/hook" not in str(o)}
    if values.get("existingSecret"):
        c.check(
            secret_refs == [values["existingSecret"]],
            f"envFrom must name existingSecret, found {secret_refs}",
        )
        c.check(not secrets, "no Secret may be rendered when existingSecret is set")
    else:
        c.check(
            secret_refs and all(ref in secrets for ref in secret_refs),
            f"envFrom Secret {secret_refs} missing",
        )

    services = of_kind(objects, "Service")
    ports = {p["name"]: p["containerPort"] for p in app.get("ports", [])}
    if c.check(len(services) == 1, "expected one Service"):
        selector = services[0]["spec"]["selector"]
        labels = pod["metadata"]["labels"]
        c.check(all(labels.get(k) == v for k, v in selector.items()), "Service selector misses the pods")
        target = services[0]["spec"]["ports"][0]["targetPort"]
        c.check(target in ports or target in ports.values(), f"Service targetPort {target} is not a pod port")

    autoscaling = values["autoscaling"]
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    if autoscaling.get("enabled"):
        if c.check(len(hpas) == 1, "autoscaling.enabled needs one HPA"):
            hpa = hpas[0]
            c.check(hpa["apiVersion"] == "autoscaling/v2", "HPA must be autoscaling/v2")
            c.check(
                hpa["spec"]["minReplicas"] == autoscaling["minReplicas"],
                "HPA minReplicas differs from values",
            )
            c.check(
                hpa["spec"]["maxReplicas"] == autoscaling["maxReplicas"],
                "HPA maxReplicas differs from values",
            )
            metrics = {m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"}
            c.check(metrics == {"cpu", "memory"}, f"HPA must scale on cpu and memory, found {metrics}")
            target = hpa["spec"]["scaleTargetRef"]
            c.check(target["name"] == deployment["metadata"]["name"], "HPA targets another Deployment")
        c.check("replicas" not in deployment["spec"], "with an HPA the Deployment must leave replicas to it")
        c.check(
            autoscaling["minReplicas"] == values["replicaCount"],
            "autoscaling.minReplicas must equal replicaCount",
        )
    else:
        c.check(not hpas, "no HPA expected")
        c.check(deployment["spec"].get("replicas") == values["replicaCount"], "replicas differ from values")

    pdbs = of_kind(objects, "PodDisruptionBudget")
    if c.check(len(pdbs) == 1, "expected one PodDisruptionBudget"):
        selector = pdbs[0]["spec"]["selector"]["matchLabels"]
        labels = pod["metadata"]["labels"]
        c.check(all(labels.get(k) == v for k, v in selector.items()), "PDB selector misses the pods")

    env = {e["name"]: e.get("value") for e in app.get("env") or []}
    if values["migration"]["enabled"]:
        c.check(env.get("MIGRATE_ON_STARTUP") == "false", "with the hook, pods need MIGRATE_ON_STARTUP=false")
    else:
        c.check("MIGRATE_ON_STARTUP" not in env, "MIGRATE_ON_STARTUP must be left to the config")


def secret_ref(container: dict[str, Any], name: str) -> str | None:
    for item in container.get("env") or []:
        if item.get("name") == name:
            return ((item.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
    return None


def check_migration(
    c: Checker, objects: list[dict[str, Any]], deployment: dict[str, Any], values: dict[str, Any]
) -> None:
    """The hook Job (migrate, then `sources apply` when sources are set), its Secret and sources ConfigMap."""
    jobs = of_kind(objects, "Job")
    sources: dict[str, Any] = values.get("sources") or {}
    hook_maps = [
        o for o in of_kind(objects, "ConfigMap") if is_hook(o) or o["metadata"]["name"].endswith("-sources")
    ]
    if not values["migration"]["enabled"]:
        c.check(not jobs, "no migration Job expected")
        c.check(not hook_maps, "no sources ConfigMap expected without the migration Job")
        return
    if not c.check(len(jobs) == 1, "migration.enabled needs the migration Job"):
        return
    job = jobs[0]
    c.check(
        hook_events(job) == HOOK_EVENTS,
        f"migration Job hooks must be pre-install,pre-upgrade, found {hook_events(job)}",
    )
    pod = job["spec"]["template"]
    spec = pod["spec"]
    job_labels = pod["metadata"].get("labels") or {}
    selectors = [deployment["spec"]["selector"]["matchLabels"]]
    selectors += [s["spec"]["selector"] for s in of_kind(objects, "Service")]
    c.check(
        not any(all(job_labels.get(k) == v for k, v in sel.items()) for sel in selectors),
        "the migration Job's pods must not match the Deployment's or the Service's selector",
    )
    c.check(
        job_labels.get("sidecar.istio.io/inject") == "false",
        "the migration Job's pods must not get a sidecar",
    )

    inits = spec.get("initContainers") or []
    containers = spec.get("containers") or []
    fullname = job["metadata"]["name"].removesuffix("-migrate")
    secret = values.get("existingSecret") or f"{fullname}-migrate"
    if not values.get("existingSecret"):
        hook_secrets = [o for o in of_kind(objects, "Secret") if o["metadata"]["name"] == secret]
        if c.check(
            hook_secrets and is_hook(hook_secrets[0]), f"the migration Job needs its hook Secret {secret}"
        ):
            c.check(
                hook_events(hook_secrets[0]) == HOOK_EVENTS,
                "the Job's Secret must be a pre-install,pre-upgrade hook",
            )
            c.check(
                hook_weight(hook_secrets[0]) < hook_weight(job),
                f"the Job's Secret (weight {hook_weight(hook_secrets[0])}) must be created before the Job"
                f" (weight {hook_weight(job)})",
            )
    for container in inits + containers:
        where = f"migration Job container {container.get('name')}"
        check_hardened(c, spec, container, where)
        c.check(
            container.get("resources") == values["migration"]["resources"],
            f"{where}: resources {container.get('resources')} differ from migration.resources",
        )
        found = secret_ref(container, "DATABASE_URL")
        c.check(found == secret, f"{where}: DATABASE_URL must come from Secret {secret}, found {found!r}")

    annotations = pod["metadata"].get("annotations") or {}
    commands = [(item.get("name"), item.get("command")) for item in inits + containers]
    if not sources:
        c.check(not hook_maps, f"no sources ConfigMap expected without sources, found {len(hook_maps)}")
        c.check(
            not inits and commands == [("migrate", MIGRATE)],
            f"without sources the Job must run one container, migrate ({MIGRATE}), found {commands}",
        )
        volumes = [v.get("name") for v in spec.get("volumes", [])]
        c.check(volumes == ["tmp"], f"without sources the Job needs only the tmp volume, found {volumes}")
        c.check("checksum/sources" not in annotations, "no checksum/sources annotation without sources")
        return

    # migrate first (init container: the pod's containers start only once it has succeeded), then apply.
    init_commands = [(item.get("name"), item.get("command")) for item in inits]
    main_commands = [(item.get("name"), item.get("command")) for item in containers]
    c.check(
        init_commands == [("migrate", MIGRATE)],
        f"with sources, migrate ({MIGRATE}) must be the Job's only init container, found {init_commands}",
    )
    c.check(
        main_commands == [("sources", SOURCES_APPLY)],
        f"with sources, the Job's one container must run {SOURCES_APPLY}, found {main_commands}",
    )
    c.check("checksum/sources" in annotations, "with sources, the Job's pod template needs checksum/sources")
    if not c.check(len(hook_maps) == 1, f"sources need one sources ConfigMap, found {len(hook_maps)}"):
        return
    configmap = hook_maps[0]
    name = configmap["metadata"]["name"]
    c.check(name == f"{fullname}-sources", f"the sources ConfigMap is {name}, expected {fullname}-sources")
    c.check(
        hook_events(configmap) == HOOK_EVENTS,
        f"the sources ConfigMap must be a pre-install,pre-upgrade hook, found {hook_events(configmap)}",
    )
    c.check(
        hook_weight(configmap) < hook_weight(job),
        f"the sources ConfigMap (weight {hook_weight(configmap)}) must be created before the Job"
        f" (weight {hook_weight(job)})",
    )
    policies = delete_policies(configmap)
    c.check("before-hook-creation" in policies, "the sources ConfigMap needs before-hook-creation")
    c.check(
        "hook-succeeded" not in policies,
        "the sources ConfigMap must not be hook-succeeded (it shows what was applied)",
    )
    data = configmap.get("data") or {}
    expected_keys = {f"{source}.yaml" for source in sources}
    c.check(
        set(data) == expected_keys, f"sources ConfigMap keys {sorted(data)}, expected {sorted(expected_keys)}"
    )
    for source, source_spec in sources.items():
        text = data.get(f"{source}.yaml")
        if text is None:
            continue
        rendered = yaml.safe_load(text)
        c.check(
            rendered == {**source_spec, "name": source},
            f"sources ConfigMap {source}.yaml differs from sources.{source} plus name: {source}",
        )

    apply = containers[0] if containers else {}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = [m for m in apply.get("volumeMounts", []) if m.get("mountPath") == SOURCES_DIR]
    if c.check(mounts, f"the sources container must mount the sources at {SOURCES_DIR}"):
        mount = mounts[0]
        c.check(mount.get("readOnly") is True, f"{SOURCES_DIR} must be mounted read-only")
        volume = volumes.get(mount["name"]) or {}
        c.check(
            (volume.get("configMap") or {}).get("name") == name,
            f"{SOURCES_DIR} must be the ConfigMap {name}, found {volume}",
        )
    env = {e["name"]: e.get("value") for e in apply.get("env") or []}
    c.check(
        env.get("S3_BUCKET_NAME") == values["config"]["S3_BUCKET_NAME"],
        f"the sources container needs S3_BUCKET_NAME={values['config']['S3_BUCKET_NAME']}, found"
        f" {env.get('S3_BUCKET_NAME')!r}",
    )


def expected_fullname(values: dict[str, Any], release: str) -> str:
    """The chart's aws-s3-service.fullname."""
    if values.get("fullnameOverride"):
        return str(values["fullnameOverride"])[:52].rstrip("-")
    name = values.get("nameOverride") or CHART_NAME
    full = release if name in release else f"{release}-{name}"
    return full[:52].rstrip("-")


def check_identity(
    c: Checker,
    objects: list[dict[str, Any]],
    deployment: dict[str, Any],
    values: dict[str, Any],
    release: str,
) -> None:
    """`kubectl get pods -l app.kubernetes.io/name=aws-s3-service` finds the pods, running the image asked."""
    name = values.get("nameOverride") or CHART_NAME
    pod = deployment["spec"]["template"]
    labels = pod["metadata"].get("labels") or {}
    c.check(
        labels.get(NAME_LABEL) == name,
        f"pods must be labelled {NAME_LABEL}={name} (release {release}), found {labels.get(NAME_LABEL)!r}",
    )
    c.check(
        labels.get(INSTANCE_LABEL) == release,
        f"pods must be labelled {INSTANCE_LABEL}={release}, found {labels.get(INSTANCE_LABEL)!r}",
    )
    selector = deployment["spec"]["selector"]["matchLabels"]
    c.check(
        selector.get(NAME_LABEL) == name and selector.items() <= labels.items(),
        f"the Deployment's selector {selector} must select its pods by {NAME_LABEL}={name}",
    )
    for service in of_kind(objects, "Service"):
        service_selector = service["spec"].get("selector") or {}
        c.check(
            service_selector and service_selector.items() <= labels.items(),
            f"Service {service['metadata']['name']} selector {service_selector} must select the pods",
        )
    fullname = expected_fullname(values, release)
    c.check(
        deployment["metadata"]["name"] == fullname,
        f"the Deployment is {deployment['metadata']['name']}, expected {fullname} (release {release})",
    )

    image = values["image"]
    if image.get("digest"):
        expected = f"{image['repository']}@{image['digest']}"
    elif image.get("tag"):
        expected = f"{image['repository']}:{image['tag']}"
    else:
        expected = None  # the chart's appVersion
    containers = pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])
    for job in of_kind(objects, "Job"):
        job_spec = job["spec"]["template"]["spec"]
        containers += job_spec.get("containers", []) + job_spec.get("initContainers", [])
    for container in containers:
        got = str(container.get("image", ""))
        ok = got == expected if expected else got.startswith(f"{image['repository']}:")
        c.check(
            ok, f"container {container.get('name')} runs {got!r}, expected {expected or image['repository']}"
        )


def route_by_name(vs: dict[str, Any], name: str) -> dict[str, Any]:
    return next((r for r in vs["spec"].get("http", []) if r.get("name") == name), {})


def check_istio_values(c: Checker, istio_objects: list[dict[str, Any]], values: dict[str, Any]) -> None:
    """The Istio objects carry the values' numbers, exactly."""
    istio = values["istio"]
    vs_values = istio["virtualService"]
    gateway = istio["gateway"]
    services = of_kind(istio_objects, "VirtualService")
    if c.check(len(services) == 1, f"expected one VirtualService, found {len(services)}"):
        vs = services[0]
        c.check(
            vs["spec"].get("hosts") == gateway["hosts"],
            f"VirtualService hosts {vs['spec'].get('hosts')}, expected the gateway's {gateway['hosts']}",
        )
        names = [r.get("name") for r in vs["spec"].get("http", [])]
        idempotent = route_by_name(vs, "idempotent")
        default = route_by_name(vs, "default")
        if c.check(idempotent, "VirtualService needs the route of the idempotent methods (idempotent)"):
            methods = [m.get("method", {}).get("exact") for m in idempotent.get("match", [])]
            c.check(
                methods == vs_values["idempotentMethods"],
                f"the idempotent route matches {methods}, expected {vs_values['idempotentMethods']}",
            )
            c.check(
                idempotent.get("timeout") == vs_values["timeout"],
                f"the idempotent route's timeout is {idempotent.get('timeout')!r}, expected"
                f" istio.virtualService.timeout {vs_values['timeout']!r}",
            )
            c.check(
                idempotent.get("retries") == vs_values["retries"],
                f"the idempotent route's retries are {idempotent.get('retries')}, expected"
                f" istio.virtualService.retries {vs_values['retries']}",
            )
        if c.check(default, "VirtualService needs the route of every other method (default)"):
            c.check("match" not in default, "the default route must match every request (no match)")
            c.check(
                names.index("default") == len(names) - 1
                and names.index("idempotent") < names.index("default"),
                f"the default route must come last, after the idempotent one: {names}",
            )
            write = vs_values["write"]
            c.check(
                default.get("timeout") == write["timeout"] and default.get("retries") == write["retries"],
                f"the default route has timeout {default.get('timeout')!r} and retries"
                f" {default.get('retries')}, expected istio.virtualService.write {write}",
            )
            retry_on = set(str((default.get("retries") or {}).get("retryOn", "")).split(","))
            c.check(
                not retry_on & {"5xx", "reset", "gateway-error", "retriable-4xx"},
                f"the default route (POST, PUT, ...) must retry only what never reached a pod: {retry_on}",
            )

    rules = of_kind(istio_objects, "DestinationRule")
    if c.check(len(rules) == 1, f"expected one DestinationRule, found {len(rules)}"):
        pool = (rules[0]["spec"].get("trafficPolicy") or {}).get("connectionPool")
        wanted = istio["destinationRule"].get("connectionPool")
        c.check(pool == wanted, f"DestinationRule connectionPool {pool} differs from the values' {wanted}")

    gateways = of_kind(istio_objects, "Gateway")
    if not gateway["create"]:
        c.check(not gateways, "istio.gateway.create=false: no Gateway expected")
        return
    if not c.check(len(gateways) == 1, f"expected one Gateway, found {len(gateways)}"):
        return
    servers = gateways[0]["spec"].get("servers", [])
    ports = sorted((s["port"]["number"], s["port"]["protocol"]) for s in servers)
    for server in servers:
        c.check(
            server.get("hosts") == gateway["hosts"],
            f"Gateway port {server['port']['number']}: hosts {server.get('hosts')}, not {gateway['hosts']}",
        )
    plain = next((s for s in servers if s["port"]["number"] == 80), {})
    if gateway["tls"]["enabled"]:
        c.check(
            ports == [(80, "HTTP"), (443, "HTTPS")], f"TLS on: Gateway ports 80 and 443 expected, {ports}"
        )
        https = next((s for s in servers if s["port"]["number"] == 443), {})
        c.check(
            (https.get("tls") or {}).get("credentialName") == gateway["tls"]["credentialName"],
            f"Gateway 443 must use the TLS Secret {gateway['tls']['credentialName']}",
        )
        c.check(
            bool((plain.get("tls") or {}).get("httpsRedirect")) == bool(gateway.get("httpsRedirect")),
            f"Gateway port 80 httpsRedirect must be {gateway.get('httpsRedirect')}",
        )
    else:
        c.check(
            ports == [(80, "HTTP")], f"TLS off: the Gateway serves plain HTTP on port 80 only, found {ports}"
        )
        c.check("tls" not in plain, "TLS off: Gateway port 80 must not redirect to HTTPS")


def check_original(c: Checker, istio_objects: list[dict[str, Any]], expect: str) -> None:
    """The numbers of the service this chart replaces (ORIGINAL), whatever the values files say."""
    want = ORIGINAL[expect]
    label = want["label"]

    def same(what: str, got: object, wanted: object) -> None:
        c.check(got == wanted, f"{what}: {got!r}, expected {wanted!r} ({label})")

    vs = next(iter(of_kind(istio_objects, "VirtualService")), {"spec": {}})
    route = route_by_name(vs, "idempotent")
    retries = route.get("retries") or {}
    same("VirtualService timeout (GET, HEAD, OPTIONS)", route.get("timeout"), want["timeout"])
    same("VirtualService retries.attempts", retries.get("attempts"), want["attempts"])
    same("VirtualService retries.retryOn", retries.get("retryOn"), want["retryOn"])
    if "perTryTimeout" in want:
        same("VirtualService retries.perTryTimeout", retries.get("perTryTimeout"), want["perTryTimeout"])
    else:  # ours to choose: the tries must fit in the route timeout
        per_try = seconds(str(retries.get("perTryTimeout", "")))
        c.check(
            0 < per_try * int(retries.get("attempts", 0)) <= seconds(str(route.get("timeout", ""))),
            f"retries.attempts x perTryTimeout ({retries.get('attempts')} x {retries.get('perTryTimeout')})"
            f" must fit in the timeout {route.get('timeout')}",
        )
    dr = next(iter(of_kind(istio_objects, "DestinationRule")), {"spec": {}})
    pool = (dr["spec"].get("trafficPolicy") or {}).get("connectionPool") or {}
    same(
        "DestinationRule tcp.maxConnections",
        (pool.get("tcp") or {}).get("maxConnections"),
        want["maxConnections"],
    )
    for key in ("http1MaxPendingRequests", "http2MaxRequests"):
        same(f"DestinationRule http.{key}", (pool.get("http") or {}).get(key), want[key])
    gateway = next(iter(of_kind(istio_objects, "Gateway")), {"spec": {}})
    servers = gateway["spec"].get("servers", [])
    same(
        "Gateway servers",
        sorted((s["port"]["number"], s["port"]["protocol"]) for s in servers),
        want["gateway"],
    )
    if "hosts" in want:
        same("Gateway hosts", sorted({h for s in servers for h in s.get("hosts", [])}), want["hosts"])
        same("VirtualService hosts", vs["spec"].get("hosts"), want["hosts"])


def check_istio(
    c: Checker,
    objects: list[dict[str, Any]],
    deployment: dict[str, Any],
    istio: bool,
    values: dict[str, Any],
    expect: str | None,
) -> None:
    istio_objects = [o for o in objects if ".istio.io/" in str(o.get("apiVersion"))]
    pod_meta = deployment["spec"]["template"]["metadata"]
    proxy_config = (pod_meta.get("annotations") or {}).get(ISTIO_PROXY_ANNOTATION)
    sidecar_label = (pod_meta.get("labels") or {}).get("sidecar.istio.io/inject")
    if not istio:
        kinds = sorted(o["kind"] for o in istio_objects)
        c.check(not istio_objects, f"istio.enabled=false must render no Istio object, found {kinds}")
        c.check(proxy_config is None and sidecar_label is None, "no sidecar settings without istio.enabled")
        return

    kinds = {o["kind"] for o in istio_objects}
    for kind in ("VirtualService", "DestinationRule"):
        c.check(kind in kinds, f"istio.enabled needs a {kind}")
    c.check(sidecar_label == "true", "istio.enabled: pods need the sidecar.istio.io/inject=true label")
    if c.check(proxy_config, f"istio.enabled: pods need the {ISTIO_PROXY_ANNOTATION} annotation"):
        config = json.loads(proxy_config)
        c.check(
            config.get("holdApplicationUntilProxyStarts") is True,
            "holdApplicationUntilProxyStarts must be true",
        )
        drain = seconds(str(config.get("terminationDrainDuration", "0s")))
        grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        c.check(
            0 < drain < grace, f"terminationDrainDuration {drain}s must be below the grace period {grace}s"
        )

    for vs in of_kind(istio_objects, "VirtualService"):
        routes = [r for r in vs["spec"].get("http", []) if "route" in r]
        c.check(routes, "VirtualService has no routes")
        for route in routes:
            name = route.get("name")
            c.check(
                seconds(str(route.get("timeout", ""))) > 0, f"VirtualService route {name} needs a timeout"
            )
            retries = route.get("retries") or {}
            c.check(retries.get("attempts", 0) >= 1, f"VirtualService route {name} needs retries.attempts")
            c.check(retries.get("perTryTimeout"), f"VirtualService route {name} needs retries.perTryTimeout")
            c.check(
                "connect-failure" in retries.get("retryOn", ""), f"route {name} must retry connect-failure"
            )
        retry_on = {cond for r in routes for cond in (r.get("retries") or {}).get("retryOn", "").split(",")}
        c.check("5xx" in retry_on, "VirtualService must retry 5xx (on idempotent methods)")
    for dr in of_kind(istio_objects, "DestinationRule"):
        policy = dr["spec"].get("trafficPolicy") or {}
        pool = policy.get("connectionPool") or {}
        c.check(
            pool.get("tcp") and pool.get("http"), "DestinationRule needs tcp and http connection pool limits"
        )
        c.check(policy.get("outlierDetection"), "DestinationRule needs outlierDetection")
        c.check(
            (policy.get("tls") or {}).get("mode") == "ISTIO_MUTUAL",
            "DestinationRule tls must be ISTIO_MUTUAL",
        )
    check_istio_values(c, istio_objects, values)
    if expect:
        check_original(c, istio_objects, expect)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("render_dir", type=Path)
    parser.add_argument(
        "--istio", choices=("on", "off"), required=True, help="whether Istio objects are expected"
    )
    parser.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    parser.add_argument("--set", action="append", default=[], help="key=value, as helm --set (repeatable)")
    parser.add_argument("--release", default=CHART_NAME, help="the release name the render used")
    parser.add_argument(
        "--expect", choices=sorted(ORIGINAL), help="also check the original service's numbers"
    )
    args = parser.parse_args(argv)

    values: dict[str, Any] = {}
    for name in args.values:
        values = merge(values, yaml.safe_load(Path(name).read_text()) or {})
    if args.set:
        import helm_python  # only --set needs it: parsed exactly as helm parses it

        for expression in args.set:
            values = merge(values, helm_python.parse_set_string(expression))
    objects = load_objects(args.render_dir)
    c = Checker()
    if c.check(objects, f"{args.render_dir}: nothing rendered"):
        deployment = check_deployment(c, objects, values)
        if deployment:
            check_shutdown(c, objects, deployment)
            check_wiring(c, objects, deployment, values)
            check_migration(c, objects, deployment, values)
            check_identity(c, objects, deployment, values, args.release)
            check_istio(c, objects, deployment, args.istio == "on", values, args.expect)
    for failure in c.failures:
        sys.stderr.write(f"FAIL {args.render_dir}: {failure}\n")
    sys.stdout.write(f"assertions {args.render_dir}: {c.passed} passed, {len(c.failures)} failed\n")
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
