"""Checks that the Jenkinsfile's AWS identity is the original service's credential id by default.

The original service's operators have one Jenkins credential, `aws-credentials` ("AWS Credentials",
aws-credentials plugin). The Jenkinsfile must use it unless told otherwise:

1. the `parameters` block declares `string(name: 'AWS_CREDENTIALS_ID', defaultValue: 'aws-credentials', ...)`;
2. every `aws(credentialsId: ...)` binding takes its id from that parameter, directly or through functions
   of the Jenkinsfile (never a literal or a GString such as "aws-s3-service-aws-${params.ENV}");
3. every other string literal on that path (the fallback for a job that has not registered the
   parameter yet, or for an empty value) is 'aws-credentials' too; '{env}' (the placeholder for ENV) aside.

Usage: python jenkins_credentials.py REPO_ROOT
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PARAMETER = "AWS_CREDENTIALS_ID"
DEFAULT = "aws-credentials"
PLACEHOLDERS = {"{env}"}


def _strip_comments(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("//"))


def _call_args(source: str, start: int) -> str:
    """The text between the parenthesis at `start` and its match (no parentheses inside strings here)."""
    depth = 0
    for index in range(start, len(source)):
        if source[index] == "(":
            depth += 1
        elif source[index] == ")":
            depth -= 1
            if depth == 0:
                return source[start + 1 : index]
    return source[start + 1 :]


def _functions(source: str) -> dict[str, str]:
    """Top-level function definitions of the Jenkinsfile: name -> body."""
    return {
        match.group(1): match.group(2)
        for match in re.finditer(
            r"^(?:String|void|def|boolean|Object)\s+(\w+)\s*\([^)]*\)\s*\{\n(.*?)^\}", source, re.M | re.S
        )
    }


def check(source: str) -> list[str]:
    source = _strip_comments(source)
    problems = []

    defaults = []
    for match in re.finditer(r"\bstring\s*\(", source):
        args = _call_args(source, match.end() - 1)
        if re.search(r"\bname:\s*'" + PARAMETER + "'", args):
            default = re.search(r"\bdefaultValue:\s*'([^']*)'", args)
            defaults.append(default.group(1) if default else None)
    if not defaults:
        problems.append(f"no string parameter {PARAMETER} in the parameters block")
    elif defaults != [DEFAULT]:
        problems.append(
            f"parameter {PARAMETER} defaults to {defaults[0]!r}, expected {DEFAULT!r} (the original's id)"
        )

    functions = _functions(source)
    bindings = [_call_args(source, m.end() - 1) for m in re.finditer(r"\baws\s*\(", source)]
    bindings = [args for args in bindings if "credentialsId:" in args]
    if not bindings:
        problems.append("no aws(credentialsId: ...) binding")
    for args in bindings:
        expression = re.search(r"credentialsId:\s*(.*?)\s*(?:,\s*\w+:|$)", args, re.S)
        text = expression.group(1) if expression else ""
        if re.fullmatch(r"""(['"]).*\1""", text, re.S):
            problems.append(f"aws(credentialsId: {text}) is hard-wired: take it from params.{PARAMETER}")
            continue
        # The expression and the bodies of the Jenkinsfile's functions it calls, transitively.
        path, todo, seen = [text], list(re.findall(r"\b(\w+)\s*\(", text)), set()
        while todo:
            name = todo.pop()
            if name in seen or name not in functions:
                continue
            seen.add(name)
            path.append(functions[name])
            todo.extend(re.findall(r"\b(\w+)\s*\(", functions[name]))
        joined = "\n".join(path)
        if PARAMETER not in joined:
            problems.append(f"aws(credentialsId: {text}) does not read params.{PARAMETER}")
        for literal in re.findall(r"'([^']*)'|\"([^\"]*)\"", joined):
            value = literal[0] or literal[1]
            if value not in (PARAMETER, DEFAULT) and value not in PLACEHOLDERS and not value.startswith("${"):
                problems.append(
                    f"aws(credentialsId: {text}) can fall back to {value!r}, expected {DEFAULT!r}"
                )
    return problems


def main(argv: list[str]) -> int:
    jenkinsfile = Path(argv[1]) / "Jenkinsfile"
    problems = check(jenkinsfile.read_text(encoding="utf-8"))
    for problem in problems:
        sys.stdout.write(f"Jenkinsfile: {problem}\n")
    if problems:
        return 1
    sys.stdout.write(f"Jenkinsfile: AWS credentials from params.{PARAMETER}, default {DEFAULT!r}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
