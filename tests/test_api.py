"""The notebook API: the README's example, run as written against a tiny corpus and store, and the
API's tables, vectors and errors."""

from __future__ import annotations

import functools
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import fake_iemocap
from featcache import api, presets
from featcache.errors import FeatcacheError
from featcache.study import MissingEntries
from test_ablate import DIM, VARIANTS, write_entries
from tiny_models import tiny_bert, tiny_wav2vec2

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    """The first python block of the README's notebook section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## From Python (notebooks)", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's notebook section has no python example"
    return match.group(1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like the demo's: ``demo-corpus/`` and a ``cache/`` store holding clean, adj and pitch."""
    d = tmp_path_factory.mktemp("api")
    fake_iemocap.build(d / "demo-corpus", fake_iemocap.small_counts(per_cell=3), audio=True, seconds=0.05)
    tiny_bert(d / "bert")
    tiny_wav2vec2(d / "w2v")
    return d


@pytest.fixture
def demo(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The ``demo`` preset with tiny backbones and one seed, quick heads, and the working directory."""
    demo_preset = presets.with_overrides(presets.PRESETS["demo"], text_backbone=str(workdir / "bert"),
                                         audio_backbone=str(workdir / "w2v"), seeds=(0,))
    monkeypatch.setitem(presets.PRESETS, "demo", demo_preset)
    monkeypatch.setattr(api, "open_study", functools.partial(api.open_study, head_epochs=3))  # quick heads
    monkeypatch.chdir(workdir)
    if not (workdir / "cache").is_dir():
        write_entries(api.open_study(corpus="iemocap:demo-corpus", cache_dir="cache", preset="demo"), VARIANTS)
    return workdir


def test_the_readme_example_runs_as_written(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ns: dict[str, object] = {}
    exec(compile(readme_example(), "README.md", "exec"), ns)  # noqa: S102  (our own README)
    study, v, preds, result = ns["study"], ns["v"], ns["preds"], ns["result"]
    n_test = len(study.fold(1).test)  # type: ignore[attr-defined]
    assert v.matrix.shape == (n_test, DIM) and v.labels.shape == (n_test,) and v.ids == list(study.fold(1).test)  # type: ignore[attr-defined]
    assert set(preds.unique("model")) == {"text", "audio", "multimodal"}  # type: ignore[attr-defined]
    assert set(preds.unique("condition")) == {"clean", "adj", "pitch", "pitch+adj"}  # type: ignore[attr-defined]
    summary, rows = (t if isinstance(t, list) else t.to_dict("records") for t in (ns["summary"], ns["rows"]))
    assert {"model", "condition", "accuracy_mean", "impact_mean"} <= set(summary[0])
    model = result.ablation.model  # type: ignore[attr-defined]
    assert model.startswith("ablate:concat-") and model in preds_models(result)
    assert [r["condition"] for r in rows] == ["clean", "adj", "pitch", "pitch+adj"]
    out = capsys.readouterr().out
    assert result.table in out and "| pitch+adj |" in out  # type: ignore[attr-defined]
    assert [i.ablation.name for i in api.ablations(study)] == [result.ablation.name]  # type: ignore[arg-type, attr-defined]


def preds_models(result: object) -> set[str]:
    return set(result.predictions.unique("model"))  # type: ignore[attr-defined]


def test_the_api_and_the_command_line_open_the_same_study(demo: Path) -> None:
    from featcache.cli import _study

    study = api.open_study(corpus="iemocap:demo-corpus", cache_dir="cache", preset="demo", head_epochs=3)
    cli_study = _study(corpus="iemocap:demo-corpus", cache_dir=Path("cache"), preset="demo", head_epochs=3)
    assert study.key == cli_study.key and study.command("train-heads") == cli_study.command("train-heads")


def test_vectors_of_other_splits_and_evaluated_ablations(demo: Path) -> None:
    study = api.open_study(corpus="iemocap:demo-corpus", cache_dir="cache", preset="demo")
    train = api.vectors(study, modality="audio", fold=2, variant="pitch", split="train")
    assert train.ids == list(study.fold(2).train) and train.affected.all()
    clean = api.vectors(study, modality="audio", fold=2, split="train")
    assert not clean.affected.any() and not np.array_equal(clean.matrix, train.matrix)
    with pytest.raises(FeatcacheError, match="split 'val'"):
        api.vectors(study, modality="text", fold=1, split="val")  # type: ignore[arg-type]
    with pytest.raises(MissingEntries, match="--variant noise"):
        api.vectors(study, modality="audio", fold=1, variant="noise")
    result = api.ablate(study, modalities=["text"], hidden=[8], conditions=["adj"], n_resamples=0)
    preds = api.evaluate(study, models=["text"], conditions=["adj"], ablations=[result.ablation.name])
    assert set(preds.unique("model")) == {"text", result.ablation.model}
    with pytest.warns(UserWarning, match="missing: featcache extract .*--variant noise"):
        api.evaluate(study, models=["audio"], conditions=["noise"])
    groups = api.results(preds, kind="groups")
    assert len(groups) == len(study.folds) * 2 * 2  # (text, ablation) x (clean, adj) per fold, one seed


def test_tables_are_dataframes_when_pandas_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    records = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    monkeypatch.setitem(sys.modules, "pandas", None)  # not installed
    assert api.table(records) == records
    fake = types.ModuleType("pandas")
    fake.DataFrame = types.SimpleNamespace(from_records=lambda rows: ("DataFrame", rows))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pandas", fake)
    assert api.table(records) == ("DataFrame", records)
