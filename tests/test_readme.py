"""The README is the front door: short, and every command in it runs as written.

Every ``snakemake`` line of the README's shell blocks is parsed by Snakemake's own argument
parser and, where it builds a DAG, dry-run (``-n`` added) from the repository root. Two cannot be
dry-run here and say why: ``--report`` needs a finished run (tests/test_report.py builds one on
the ci run) and ``--unlock`` acts on the working directory, so it runs in an empty copy of the
config folder instead. ``--use-conda`` runs where conda is installed; elsewhere the run must
stop with the workflow's own message on how to get conda.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHELL_BLOCK = re.compile(r"^( *)```bash\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def shell_lines(text: str) -> list[str]:
    """Each command line of the ```bash blocks, comments dropped, block indentation removed."""
    lines = []
    for match in SHELL_BLOCK.finditer(text):
        for line in match.group(2).splitlines():
            line = line.strip()
            if line:
                lines.append(line)
    return lines


def snakemake_commands() -> list[list[str]]:
    """The README's snakemake commands as argument lists (without the program name)."""
    commands = []
    for line in shell_lines(README.read_text()):
        words = shlex.split(line, comments=True)
        if words and Path(words[0]).name == "snakemake":
            commands.append(words[1:])
    return commands


COMMANDS = snakemake_commands()


def test_readme_is_short_and_leads() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 220
    picture = re.search(r"!\[[^]]+\]\((docs/[^)]+\.png)\)", text)
    assert picture and (REPO / picture.group(1)).exists(), "the README shows a committed output"
    assert text.count("<!-- results:start -->") == 1 and text.count("<!-- results:end -->") == 1
    for heading in ("## Quickstart", "## Results", "## Rerun one figure", "## Conda envs",
                    "## Configs", "## Troubleshooting", "## Citation"):  # fmt: skip
        assert heading in text, heading
    for path in re.findall(r"\]\(((?:docs|config)/[^)#]+|[A-Z]+(?:\.cff)?)\)", text):
        assert (REPO / path).exists(), path


def test_quickstart_is_what_ci_runs() -> None:
    """The README's second Quickstart line is the command .ci/run runs."""
    ci = (REPO / ".ci/run").read_text()
    lines = shell_lines(README.read_text())
    test_line = "python3.11 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest"
    assert test_line in lines and test_line in ci
    assert lines[0].startswith("python3.11 -m venv .venv && .venv/bin/pip install -e . ")


def test_user_docs_carry_no_session_history() -> None:
    """No dates, commit ids or issue numbers in the user-facing docs."""
    docs = [README, REPO / "config/README.md"] + [
        REPO / "docs" / name
        for name in (
            "results.md",
            "cluster.md",
            "families.md",
            "outputs.md",
            "code.md",
            "method.md",
        )  # fmt: skip
    ]
    history = re.compile(
        r"#\d+\b|\b20\d\d-\d\d-\d\d\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b"
        r"|\buntil now\b|\bthe budget's\b|\bissue\b",
        re.IGNORECASE,
    )
    found = [
        f"{path.relative_to(REPO)}: {m.group(0)!r}"
        for path in docs
        for m in history.finditer(path.read_text())
    ]
    assert not found, found


def test_readme_commands_parse() -> None:
    """Every snakemake command of the README is accepted by Snakemake's own parser (a
    ``--quiet rules <target>`` once took the target as a --quiet choice and exited 2)."""
    from snakemake.cli import get_argument_parser

    assert len(COMMANDS) >= 5
    parser = get_argument_parser()
    for args in COMMANDS:
        try:
            parser.parse_args(args)
        except SystemExit as err:
            pytest.fail(f"snakemake {shlex.join(args)}: rejected by Snakemake's parser ({err})")


def dry(args: list[str]) -> list[str]:
    return args if "-n" in args or "--dry-run" in args else ["-n", *args]


@pytest.mark.parametrize("args", COMMANDS, ids=[shlex.join(a) for a in COMMANDS])
def test_readme_command_runs(args: list[str], run_snakemake, tmp_path: Path) -> None:
    if "--report" in args:
        pytest.skip("needs a finished run: tests/test_report.py runs --report on the ci run")
    if "--unlock" in args:  # in an empty working directory, not the checkout's
        shutil.copytree(REPO / "config", tmp_path / "config")
        proc = run_snakemake(*args, "--snakefile", str(REPO / "Snakefile"),
                             "--directory", str(tmp_path))  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return
    proc = run_snakemake(*dry(args))
    output = proc.stdout + proc.stderr
    if "--use-conda" in args and not shutil.which("conda"):
        assert proc.returncode != 0
        assert "--use-conda needs `conda` on PATH" in output and "Miniforge" in output, output
        return
    assert proc.returncode == 0, f"snakemake {shlex.join(dry(args))}:\n{output[-4000:]}"
    assert "Job stats" in output or "Nothing to be done" in output, output[-2000:]
