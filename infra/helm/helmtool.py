"""`helm lint` and `helm template` without a helm binary, for infra/helm/check.sh.

helm-python-sdk binds (ctypes) to libhelm_c, a C ABI over Helm's own Go SDK (v4) that its wheel bundles, so
the Go templates, Sprig functions, values coalescing and values.schema.json validation are Helm's own, and
nothing is fetched at run time.

    python helmtool.py lint CHART -f values-prod.yaml -f overrides.yaml [--set key=value]
    python helmtool.py template CHART -f values-prod.yaml --api-versions networking.istio.io/v1 --out DIR

Values files and --set are layered as helm does: files in order (maps merged deeply, the later file winning),
then --set. `template` validates the values against the chart's schema, renders, and writes every object to
DIR/k8s/ or, for Istio's API groups, DIR/istio/ (one file per object).

As with `helm template`, there is no cluster: `.Capabilities.APIVersions` holds Kubernetes' built-in APIs plus
each --api-versions given (the chart refuses to render Istio objects for a cluster without Istio's APIs, see
istio.requireCrds), and --kube-version sets `.Capabilities.KubeVersion`. `lint` has no --api-versions (nor
has Helm's CLI), and Helm's lint only logs a template's `fail`: check.sh lints with istio.requireCrds=false.
"""

import argparse
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from helm_python import _native  # the SDK's ctypes layer: render options Chart.render does not take (_render)

ISTIO_GROUPS = (".istio.io/",)
WARNING = 2  # lint severities: 1 info, 2 warning, 3 error


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _values(files: list[str], sets: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in files:
        loaded = yaml.safe_load(Path(name).read_text()) or {}
        if not isinstance(loaded, dict):
            raise SystemExit(f"{name}: a values file must hold a mapping")
        values = _merge(values, loaded)
    for expression in sets:
        values = _merge(values, helm.parse_set_string(expression))
    return values


def _lint(args: argparse.Namespace) -> int:
    report = helm.lint(
        args.chart,
        _values(args.values, args.set),
        strict=True,
        namespace=args.namespace,
        kube_version=args.kube_version,
    )
    failed = False
    for message in report.get("messages", []):
        severity = int(message.get("severity", 0))
        label = {1: "INFO", 2: "WARNING", 3: "ERROR"}.get(severity, "UNKNOWN")
        sys.stdout.write(f"[{label}] {message.get('path')}: {str(message.get('error')).strip()}\n")
        failed = failed or severity >= WARNING
    for error in report.get("errors", []):
        sys.stdout.write(f"[ERROR] {str(error).strip()}\n")
        failed = True
    given = " ".join([*(f"-f {Path(name).name}" for name in args.values), *(f"--set {s}" for s in args.set)])
    sys.stdout.write(f"lint {Path(args.chart).name} {given}: {'failed' if failed else 'ok'}\n")
    return 1 if failed else 0


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-")


def _render(chart: helm.Chart, values: dict[str, Any], args: argparse.Namespace) -> dict[str, str]:
    """`helm template`'s render, with its --api-versions and --kube-version.

    helm-python-sdk 0.2.2's Chart.render takes name, namespace, revision, is_install and is_upgrade only,
    while the C function under it, helm_render, also decodes `api_versions` and `kube_version` from its
    options JSON (Helm's chartutil.Capabilities). Those go straight to it; a later release whose render
    takes them is called the public way.
    """
    options: dict[str, Any] = {"name": args.name, "namespace": args.namespace, "is_install": True}
    extra: dict[str, Any] = {}
    if args.api_versions:
        extra["api_versions"] = list(args.api_versions)
    if args.kube_version:
        extra["kube_version"] = args.kube_version
    if not extra:
        return chart.render(values, **options)
    if set(extra) <= set(inspect.signature(chart.render).parameters):
        return chart.render(values, **options, **extra)
    rendered = _native.call_string(
        "helm_render", chart._raw(), json.dumps(values), json.dumps(options | extra)
    )
    manifests: dict[str, str] = json.loads(rendered)
    return manifests


def _template(args: argparse.Namespace) -> int:
    values = _values(args.values, args.set)
    with helm.Chart.load(args.chart) as chart:
        chart.validate_schema(values)
        rendered = _render(chart, values, args)
    out = Path(args.out)
    for sub in ("k8s", "istio"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    documents = []
    for template in sorted(rendered):
        if not template.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for text in re.split(r"^---\s*$", rendered[template], flags=re.MULTILINE):
            document = yaml.safe_load(text)
            if not document:
                continue
            if not isinstance(document, dict) or "kind" not in document:
                raise SystemExit(f"{template}: rendered something that is not a Kubernetes object")
            documents.append((template, document))
    for index, (template, document) in enumerate(documents):
        istio = any(group in str(document.get("apiVersion", "")) for group in ISTIO_GROUPS)
        name = document.get("metadata", {}).get("name", "unnamed")
        target = (
            out / ("istio" if istio else "k8s") / f"{index:02d}-{_slug(document['kind'])}-{_slug(name)}.yaml"
        )
        target.write_text(f"# Source: {template}\n" + yaml.safe_dump(document, sort_keys=False))
    sys.stdout.write(f"rendered {len(documents)} objects into {out}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("lint", "template"):
        sub = commands.add_parser(command)
        sub.add_argument("chart")
        sub.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
        sub.add_argument("--set", action="append", default=[], help="key=value, as helm --set (repeatable)")
        sub.add_argument("--namespace", default="aws-s3-service")
        if command == "lint":
            sub.add_argument("--kube-version", default="v1.31.0", help="Kubernetes version to lint for")
        if command == "template":
            sub.add_argument("--name", default="aws-s3-service", help="release name")
            sub.add_argument("--out", required=True, help="directory for the rendered objects")
            sub.add_argument(
                "--api-versions",
                action="append",
                default=[],
                help="an API version the cluster would serve, e.g. networking.istio.io/v1 (repeatable)",
            )
            sub.add_argument(
                "--kube-version", default="", help="Kubernetes version to render for, e.g. v1.31.0"
            )
    args = parser.parse_args(argv)
    try:
        return _lint(args) if args.command == "lint" else _template(args)
    except helm.HelmError as exc:
        sys.stderr.write(f"helm {args.command} failed: {type(exc).__name__}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
