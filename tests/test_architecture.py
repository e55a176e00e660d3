"""The layering the README's architecture section describes: each module imports only layers below it
(lazy imports included), click only in the command line, the paper's lists and condition parsing in one
home each, and the split result modules kept small."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "featcache"
LAYERS = (
    ("errors", "paper", "hardware", "__init__"), ("data", "folds", "cache"), ("perturb",), ("conditions",), ("backbones",),
    ("transcribe",), ("presets",), ("options",), ("workers", "buckets"), ("extract", "heads", "train", "ensemble"), ("finetune", "lineage"), ("metrics",), ("study",),
    ("ablate",), ("report",), ("executors",), ("pipeline", "api"), ("demo",), ("cli",),
)
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _top(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0] if parts else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "featcache":
            names = [node.module] if node.module != "featcache" else [f"featcache.{a.name}" for a in node.names]
            out += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "featcache"]
    return out


def test_every_module_imports_only_lower_layers() -> None:
    upward, unknown = [], []
    for path in _modules():
        top = _top(path)
        for line, name in _imports(path):
            dep = name.split(".")[1]
            if dep == "__version__":
                continue
            if dep not in RANK or top not in RANK:
                unknown.append(f"{path.name}:{line} {name}")
            elif RANK[dep] > RANK[top]:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {name}")
    assert unknown == [] and upward == [], unknown + upward


def test_click_lives_only_in_the_command_line() -> None:
    users = [p.relative_to(PACKAGE).as_posix() for p in _modules() if "import click" in p.read_text(encoding="utf-8")]
    assert users and all(u.startswith("cli/") for u in users), users


def test_the_papers_lists_and_condition_parsing_have_one_home() -> None:
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(PACKAGE).as_posix()
        if rel != "paper.py":
            for definition in ('= ("ang", "sad", "hap", "fru")', '"adj", "random-adj", "noun", "random-noun"',
                               "= (512, 256)", '{"exc": "hap"}', '("late", "score", "gated", "mdrop")'):
                assert definition not in text, (rel, definition)
        if rel != "conditions.py":
            assert "def parse_condition" not in text and 're.split(r"\\+' not in text, rel


def test_result_modules_are_small() -> None:
    big = {p.relative_to(PACKAGE).as_posix(): n for p in (*PACKAGE.joinpath("metrics").glob("*.py"),
                                                          *PACKAGE.joinpath("report").glob("*.py"))
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert big == {}


def test_no_module_is_over_about_600_lines() -> None:
    big = {p.relative_to(PACKAGE).as_posix(): n for p in _modules()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 620}
    assert big == {}


def test_no_private_torch_function_is_called() -> None:
    """A private torch function (``torch._foo``) changes without notice; the public API does the job."""
    import re

    calls = [f"{p.relative_to(PACKAGE)}:{i}" for p in _modules()
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"\btorch\._[a-z]", line.split("#", 1)[0])]
    assert calls == []


def test_one_vocabulary_of_heads() -> None:
    """Every model and every ablation fusion names a registered head kind; nothing bridges them elsewhere."""
    from featcache import paper
    from featcache.heads import HEADS

    assert set(paper.MODEL_HEADS) == set(paper.ALL_MODELS)
    assert {kind for kind, _ in paper.MODEL_HEADS.values()} | set(paper.ABLATION_FUSIONS.values()) <= set(HEADS)
    for path in _modules():
        assert "_HEAD_KIND" not in path.read_text(encoding="utf-8"), path


def test_every_command_the_help_mentions_exists() -> None:
    """``featcache --help`` and every command's help name only commands there are (`featcache presets`, ...)."""
    import re

    from click.testing import CliRunner

    from featcache.cli import cli

    def helps(group, prefix):  # type: ignore[no-untyped-def]
        yield prefix, CliRunner().invoke(cli, [*prefix, "--help"]).output
        for name, cmd in getattr(group, "commands", {}).items():
            yield from helps(cmd, [*prefix, name])

    names = set(cli.commands)
    for prefix, text in helps(cli, []):
        for word in re.findall(r"`featcache ([a-z-]+)", text):
            assert word in names, (prefix, word)


def test_the_architecture_map_lists_every_module() -> None:
    import re

    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`(featcache/[\w/]+\.py)`", doc))
    modules = {p.relative_to(PACKAGE.parent).as_posix() for p in _modules()}
    assert sorted(modules - listed) == [] and sorted(listed - modules) == []


def test_the_batched_trainer_knows_no_head_kind() -> None:
    """Each head kind's batched forward lives with the kind (featcache.heads); the ensemble names none."""
    for path in PACKAGE.joinpath("ensemble").glob("*.py"):
        code = "\n".join(line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()
                         if not line.lstrip().startswith((":class:", "``")))
        for kind in ("UnimodalHead", "MultimodalHead", "GatedFusion", "ScoreFusion", "LateFusion"):
            assert f"isinstance(head, {kind}" not in code and f"import {kind}" not in code, (path.name, kind)
