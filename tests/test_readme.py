"""The README and docs/ pages: their tested command blocks run, every command line's flags exist, every link resolves.

The README's block marked ``<!-- readme-test -->`` and every block marked ``<!-- doc-test -->`` (cheap,
offline commands only) run line by line as a newcomer would. Every other ``mvit-deploy`` line in a
code block is not run, but its subcommand and flags are looked up in the click app, so the pages
cannot drift from the CLI.
"""

from __future__ import annotations

import glob
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from helpers import ROOT, run_cli

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
EXE = (".venv/bin/mvit-deploy ", "mvit-deploy ")


def rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- readme-test -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "README lost its tested command block"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert all(line.startswith(".venv/bin/mvit-deploy ") for line in lines)
    return [shlex.split(line)[1:] for line in lines]


def newcomer_dir(tmp_path: Path) -> Path:
    """A working folder holding the repository's image paths the pages use (photos, shipped samples)."""
    shutil.copytree(
        ROOT / "mvit_deploy" / "inputs" / "calibration" / "photos",
        tmp_path / "mvit_deploy" / "inputs" / "calibration" / "photos",
    )
    shutil.copytree(
        ROOT / "mvit_deploy" / "inputs" / "datasets",
        tmp_path / "mvit_deploy" / "inputs" / "datasets",
        ignore=shutil.ignore_patterns("*.py", "*.npz"),
    )
    return tmp_path


def test_readme_commands_run(tmp_path):
    cwd = newcomer_dir(tmp_path)
    commands = readme_commands()
    assert any(c[0] == "export" for c in commands) and any(c[0] == "parity" for c in commands)
    for args in commands:
        result = run_cli(*args, cwd=cwd)
        assert result.returncode == 0, f"{' '.join(args)}\n{result.stderr[-2000:]}"
        if args[0] == "parity":
            assert json.loads(result.stdout)["passed"] is True
        if args[0] == "predict" and "--pretrained" in args:
            assert result.stdout.splitlines()[0].split()[1:3] == ["Ankle", "boot"], result.stdout
    out = cwd / "out"
    for name in (
        "mobilevit_xxs-onnx-fp32.onnx",
        "mobilevit_xxs-tflite-fp32-nhwc.tflite",
        "mobilevit_xxs-coreml-fp16.mlpackage",
        "parity.xml",
    ):
        assert (out / name).exists(), name


# ---- blocks marked <!-- doc-test -->: run ----------------------------------------------------


def doc_test_blocks() -> list:
    blocks = []
    for page in PAGES:
        for i, m in enumerate(re.finditer(r"<!-- doc-test -->\s*```bash\n(.*?)```", page.read_text(), re.S)):
            lines = [line for line in m.group(1).splitlines() if line.strip()]
            blocks.append(pytest.param(page, lines, id=f"{rel(page)}#{i + 1}"))
    return blocks


def expand(args: list[str], cwd: Path) -> list[str]:
    """A shell's globbing, relative to the working folder (``out/*.onnx``)."""
    out = []
    for arg in args:
        if any(c in arg for c in "*?["):
            found = sorted(str(Path(p).relative_to(cwd)) for p in glob.glob(str(cwd / arg)))
            assert found, f"{arg} matches nothing"
            out += found
        else:
            out.append(arg)
    return out


def test_docs_have_doc_test_blocks():
    assert doc_test_blocks(), "no page has a block marked <!-- doc-test --> any more"


@pytest.mark.parametrize(("page", "lines"), doc_test_blocks())
def test_doc_test_block_runs(page, lines, tmp_path):
    cwd = newcomer_dir(tmp_path)
    for line in lines:
        assert line.startswith(EXE[0]), f"{rel(page)}: a doc-test line runs the installed CLI: {line}"
        args = expand(shlex.split(line, comments=True)[1:], cwd)
        result = run_cli(*args, cwd=cwd)
        assert result.returncode == 0, f"{rel(page)}: {line}\n{result.stderr[-2000:]}"


# ---- every mvit-deploy line in a code block: its flags exist --------------------------------


def command_lines() -> list[tuple[Path, int, str]]:
    """(page, line number, the line) of every code-block line that runs mvit-deploy."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for m in FENCE.finditer(text):
            first = text.count("\n", 0, m.start(1)) + 1
            for k, line in enumerate(m.group(1).splitlines()):
                line = line.strip().removeprefix("$ ")
                if line.startswith(EXE):
                    found.append((page, first + k, line))
    return found


def words(line: str) -> list[str]:
    """The line's words without a trailing comment; placeholders like ``[--json]`` keep their flag."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in a placeholder: split on spaces, drop the comment
        tokens = re.split(r"\s+#", line, maxsplit=1)[0].split()
    return [t.strip("[]()") for t in tokens]


def test_docs_commands_use_real_flags():
    from mvit_deploy.faces.cli import main

    lines = command_lines()
    assert len(lines) > 30, "the pages lost their command examples"
    problems = []
    for page, number, line in lines:
        tokens = words(line)[1:]
        where = f"{rel(page)}:{number}"
        if not tokens:
            continue
        name = tokens[0]
        command = main.commands.get(name)
        if command is None:
            problems.append(f"{where}: no subcommand {name!r}")
            continue
        known = {"--help", "-h"} | {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for token in tokens[1:]:
            flag = token.split("=", 1)[0]
            if flag.startswith("-") and flag not in {"-", "--"} and flag not in known and not flag[1:2].isdigit():
                problems.append(f"{where}: `mvit-deploy {name}` has no flag {flag}")
    assert not problems, "docs drifted from the CLI:\n" + "\n".join(problems)


# ---- every relative link resolves ----------------------------------------------------------


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but hyphens dropped, spaces to hyphens."""
    text = FENCE.sub("", page.read_text())
    heads = re.findall(r"^#{1,6} +(.+?) *$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower().replace("`", "")).replace(" ", "-") for h in heads}


def test_docs_links_resolve():
    problems = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text())
        text = re.sub(r"`[^`\n]*`", "", text)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                problems.append(f"{rel(page)}: link to {target}: no file {path}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{rel(page)}: link to {target}: no heading #{anchor} in {rel(dest)}")
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_test_map_covers_the_package():
    """tests/README.md names every module of the package (or its folder) and every test file, and nothing gone."""
    text = (ROOT / "tests" / "README.md").read_text()
    named = set(re.findall(r"`((?:mvit_deploy|docs)/[\w/]*(?:\.py)?|README\.md|test_\w+\.py)`", text))
    paths = {n for n in named if "/" in n}
    for path in paths:
        assert (ROOT / path).exists(), f"tests/README.md names {path}, which does not exist"
    modules = [p.relative_to(ROOT).as_posix() for p in (ROOT / "mvit_deploy").rglob("*.py")]
    unmapped = [m for m in modules if not any(m == p or (p.endswith("/") and m.startswith(p)) for p in paths)]
    assert unmapped == [], f"add to tests/README.md: {unmapped}"
    tests = {p.name for p in (ROOT / "tests").glob("test_*.py")}
    assert tests - named == set(), f"tests/README.md does not name {sorted(tests - named)}"
    assert {n for n in named if n.startswith("test_")} <= tests
