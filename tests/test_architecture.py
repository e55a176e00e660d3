"""The layering the README's architecture section describes: each module imports only layers below it
(lazy imports included), click only in the command line, the paper's lists and condition parsing in one
home each, and the split result modules kept small."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "featcache"
LAYERS = (
    ("errors", "paper", "__init__"), ("data", "folds", "cache"), ("perturb",), ("conditions",), ("backbones",),
    ("presets",), ("options",), ("workers", "buckets"), ("extract", "heads", "train", "ensemble"), ("finetune",), ("metrics",), ("study",),
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
