"""Writes the shell embedded in the pipelines out as scripts, for shellcheck (infra/containers/check.sh).

- Jenkinsfile: every `sh '''...'''` / `sh '...'` body (Groovy single-quoted strings: no interpolation;
  the escapes Groovy applies to them are undone: `\\\\` -> `\\`, backslash-newline joins lines).
- .gitlab-ci.yml: the before_script + script (+ after_script) of every job and hidden template, in order.

Each becomes OUT_DIR/<source>-<n>.sh with a `#!/bin/sh` line (Jenkins' `sh` and GitLab's runners use
/bin/sh unless told otherwise) and a comment naming where it came from. Usage:
  python embedded_shell.py REPO_ROOT OUT_DIR
"""

import re
import sys
from pathlib import Path
from typing import Any

import yaml

# sh '''...''' (multi-line) or sh '...' (one line), as a statement or as sh(script: '''...''').
_GROOVY_SH = re.compile(
    r"\bsh\s*\(?\s*(?:script:\s*)?"  # sh '...', sh('...'), sh(script: '...')
    r"(?:'''(?P<block>.*?)'''|'(?P<line>(?:[^'\\\n]|\\.)*)')",
    re.S,
)
_SCRIPT_KEYS = ("before_script", "script", "after_script")


def _groovy_unescape(text: str) -> str:
    text = re.sub(r"\\\n", "", text)  # line continuation inside a Groovy string
    return re.sub(r"\\(.)", r"\1", text)


def jenkinsfile_scripts(source: str) -> list[tuple[int, str]]:
    scripts = []
    for match in _GROOVY_SH.finditer(source):
        body = match.group("block") if match.group("block") is not None else match.group("line")
        line = source.count("\n", 0, match.start()) + 1
        scripts.append((line, _groovy_unescape(body)))
    return scripts


def commands_of(value: Any) -> list[str]:
    """A GitLab job's script lines (a string, a list, or lists nested by YAML anchors)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    commands: list[str] = []
    for item in value:
        commands.extend(commands_of(item))  # nested lists come from YAML anchors
    return commands


def gitlab_scripts(config: dict[str, Any]) -> list[tuple[str, str]]:
    scripts = []
    for name, job in config.items():
        if not isinstance(job, dict):
            continue
        commands = [command for key in _SCRIPT_KEYS for command in commands_of(job.get(key))]
        if commands:
            scripts.append((name, "\n".join(commands) + "\n"))
    return scripts


def main(argv: list[str]) -> int:
    root, out = Path(argv[1]), Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    jenkinsfile = root / "Jenkinsfile"
    if jenkinsfile.is_file():
        for line, body in jenkinsfile_scripts(jenkinsfile.read_text(encoding="utf-8")):
            written += 1
            target = out / f"Jenkinsfile-line{line}.sh"
            target.write_text(f"#!/bin/sh\n# Jenkinsfile, sh step at line {line}\n{body}\n", encoding="utf-8")
    gitlab = root / ".gitlab-ci.yml"
    if gitlab.is_file():
        config = yaml.safe_load(gitlab.read_text(encoding="utf-8")) or {}
        for name, body in gitlab_scripts(config):
            written += 1
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
            target = out / f"gitlab-ci-{safe}.sh"
            target.write_text(f"#!/bin/sh\n# .gitlab-ci.yml, job {name}\n{body}", encoding="utf-8")
    sys.stdout.write(f"{written} embedded scripts written to {out}\n")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
