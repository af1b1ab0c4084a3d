"""Offline checks of terraform/ that need no terraform binary: HCL parsing and cross-file consistency.

    python tfcheck.py parse TERRAFORM_DIR        every .tf (and *.example) file parses; checkov by default
                                                 passes a file it cannot parse
    python tfcheck.py consistency TERRAFORM_DIR  module arguments, variables, outputs and references agree

Works with the `hcl2` package of python-hcl2 8 and of bc-python-hcl2 (checkov's fork, installed under the
same name): the fork wraps every attribute value in a one-element list, python-hcl2 keeps string quotes.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

# Arguments of a module block that are Terraform's own, not the module's variables.
MODULE_META_ARGUMENTS = frozenset({"source", "version", "count", "for_each", "providers", "depends_on"})
NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
VAR_REF = re.compile(rf"(?<![\w.])var\.({NAME})")
LOCAL_REF = re.compile(rf"(?<![\w.])local\.({NAME})")
MODULE_REF = re.compile(rf"(?<![\w.])module\.({NAME})(?:\[[^\]]*\])?(?:\.({NAME}))?")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _tf_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)


def _hcl_files(root: Path) -> list[Path]:
    """The .tf files plus the operators' templates (terraform.tfvars.example, backend.hcl.example)."""
    examples = (*root.rglob("*.tfvars.example"), *root.rglob("*.hcl.example"))
    return sorted({*_tf_files(root), *(p for p in examples if ".terraform" not in p.parts)})


def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return hcl2.load(handle)


def _unquote(value: Any) -> Any:
    # python-hcl2 8 keeps the quotes of labels and string literals; bc-python-hcl2 drops them.
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _blocks(doc: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, body) of each `kind "label" {}` block (variable, output, module)."""
    for entry in doc.get(kind, []):
        for label, body in entry.items():
            yield _unquote(label), body


def _attr(body: dict[str, Any], key: str) -> Any:
    value = body.get(key)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return _unquote(value)


def _expressions(value: Any) -> Iterator[str]:
    """The `${...}` regions of every string in a parsed value (plain text such as descriptions is skipped)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not str(key).startswith("__"):
                yield from _expressions(key)
                yield from _expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _expressions(item)
    elif isinstance(value, str):
        start = value.find("${")
        while start != -1:
            depth, end = 0, start + 1
            while end < len(value):
                if value[end] == "{":
                    depth += 1
                elif value[end] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                end += 1
            yield value[start : end + 1]
            start = value.find("${", end + 1)


@dataclass
class Config:
    """One directory of .tf files: a module or an environment."""

    path: Path
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: set[str] = field(default_factory=set)
    # (file, `${...}` region) of every interpolation in the directory.
    expressions: list[tuple[Path, str]] = field(default_factory=list)
    required_version: bool = False
    aws_provider: bool = False


def _read_config(directory: Path) -> Config:
    config = Config(directory)
    for path in sorted(directory.glob("*.tf")):
        doc = _load(path)
        for name, body in _blocks(doc, "variable"):
            config.variables[name] = body
        for name, body in _blocks(doc, "output"):
            config.outputs[name] = body
        for name, body in _blocks(doc, "module"):
            config.modules[name] = body
        for entry in doc.get("locals", []):
            config.locals.update(k for k in entry if not k.startswith("__"))
        for terraform in doc.get("terraform", []):
            config.required_version |= "required_version" in terraform
            for providers in terraform.get("required_providers", []):
                config.aws_provider |= "aws" in providers
        config.expressions.extend((path, expr) for expr in _expressions(doc))
    return config


def _module_dir(caller: Config, body: dict[str, Any]) -> Path | None:
    source = _attr(body, "source")
    if isinstance(source, str) and source.startswith(("./", "../")):
        return (caller.path / source).resolve()
    return None  # a registry or git module: nothing local to compare with


def _check_config(config: Config, configs: dict[Path, Config], root: Path) -> list[str]:
    where = config.path.relative_to(root)
    errors: list[str] = []

    if not config.required_version or not config.aws_provider:
        errors.append(f"{where}: terraform block must set required_version and required_providers.aws")

    for name, body in config.variables.items():
        if not _attr(body, "description"):
            errors.append(f"{where}: variable {name!r} has no description")
    for name, body in config.outputs.items():
        if not _attr(body, "description"):
            errors.append(f"{where}: output {name!r} has no description")

    used_vars: set[str] = set()
    for path, expr in config.expressions:
        for name in VAR_REF.findall(expr):
            used_vars.add(name)
            if name not in config.variables:
                errors.append(f"{path.relative_to(root)}: var.{name} is not declared in {where}")
        for name in LOCAL_REF.findall(expr):
            if name not in config.locals:
                errors.append(f"{path.relative_to(root)}: local.{name} is not defined in {where}")
        for module, output in MODULE_REF.findall(expr):
            if module not in config.modules:
                errors.append(f"{path.relative_to(root)}: module.{module} is not declared in {where}")
                continue
            target = _module_dir(config, config.modules[module])
            if output and target in configs and output not in configs[target].outputs:
                errors.append(
                    f"{path.relative_to(root)}: module.{module}.{output}: "
                    f"{target.relative_to(root)} has no output {output!r}"
                )
    for name in sorted(set(config.variables) - used_vars):
        errors.append(f"{where}: variable {name!r} is declared but never used")

    for module, body in config.modules.items():
        target = _module_dir(config, body)
        if target is None:
            continue
        if target not in configs:
            errors.append(f"{where}: module {module!r}: source {_attr(body, 'source')!r} is no module here")
            continue
        declared = configs[target].variables
        passed = {k for k in body if not k.startswith("__")} - MODULE_META_ARGUMENTS
        for arg in sorted(passed - set(declared)):
            errors.append(
                f"{where}: module {module!r} passes {arg!r}, "
                f"which {target.relative_to(root)} does not declare as a variable"
            )
        for var in sorted(declared):
            if "default" not in declared[var] and var not in passed:
                errors.append(
                    f"{where}: module {module!r} does not pass {var!r}, "
                    f"required by {target.relative_to(root)} (no default)"
                )
    return errors


def parse(root: Path) -> int:
    files = _hcl_files(root)
    failed = 0
    for path in files:
        try:
            _load(path)
        except Exception as exc:  # the parsers raise lark errors and a few others; all mean "invalid"
            failed += 1
            message = " ".join(str(exc).split())[:300]
            _out(f"PARSE ERROR {path}: {type(exc).__name__}: {message}")
    _out(f"parsed {len(files) - failed}/{len(files)} HCL files under {root}")
    return 1 if failed or not files else 0


def consistency(root: Path) -> int:
    directories = sorted({p.parent.resolve() for p in _tf_files(root)})
    try:
        configs = {d: _read_config(d) for d in directories}
    except Exception as exc:  # a parse error: `parse` names the file
        _out(f"cannot check consistency, a file does not parse ({type(exc).__name__}); run `parse`")
        return 1
    errors = [e for config in configs.values() for e in _check_config(config, configs, root.resolve())]
    for error in errors:
        _out(f"INCONSISTENT {error}")
    _out(f"checked {len(configs)} terraform directories under {root}: {len(errors)} problem(s)")
    return 1 if errors else 0


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("command", choices=["parse", "consistency"])
    parser.add_argument("root", type=Path, help="the terraform/ directory")
    args = parser.parse_args()
    if not args.root.is_dir():
        _out(f"{args.root} is not a directory")
        return 2
    return parse(args.root) if args.command == "parse" else consistency(args.root)


if __name__ == "__main__":
    sys.exit(main())
