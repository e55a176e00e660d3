"""The report's Layers section: a layer sweep added with ``featcache evaluate --ablation text-layers`` (its
table as ``featcache ablate --layers`` prints it, the impact heatmap, clean accuracy per layer), the layer
weights of ``--layer weighted`` heads, the section drawn again by ``featcache report``, byte for byte, and
shown in a real headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_layers import env, layered  # noqa: F401  (the tiny BERT and wav2vec2, their layer-wise entries)
from test_report import BASE, CONDITIONS, synthetic
from test_report_html import chromium  # noqa: F401

from conftest import one_line_error
from featcache.ablate import Ablation, AblationSpec, StoredSweep, format_layer_table, layer_rows
from featcache.cli import cli
from featcache.metrics import Analysis, Predictions
from featcache.paper import HEAD_SETTINGS
from featcache.report import LayerSection, read_layer_section, write_report
from featcache.study import LayerWeightStat

# ------------------------------------------------------------------------------------------------
# a synthetic sweep
# ------------------------------------------------------------------------------------------------

LAYER_ABLATIONS = [Ablation(s.name(HEAD_SETTINGS), s)
                   for s in (AblationSpec(modalities=("text",), layer=k).checked() for k in range(3))]
SWEEP = StoredSweep("text", "0123abcd", "text only; hidden 512,256", tuple(enumerate(LAYER_ABLATIONS)))
WEIGHTS = (LayerWeightStat("text", "text", (0, 1, 2), (0.2, 0.3, 0.5), (0.01, 0.02, 0.03), 10),
           LayerWeightStat("multimodal", "audio", (0, 1, 2), (0.5, 0.3, 0.2), (0.01, 0.02, float("nan")), 10))


def sweep_predictions() -> Predictions:
    conds, base = dict(CONDITIONS), dict(BASE)
    for k, abl in enumerate(LAYER_ABLATIONS):
        conds[abl.model] = ("clean", "adj", "noun", "asr-0.2")
        base[abl.model] = 55 + 7 * k
    return synthetic(conditions=conds, base=base)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return write_report(sweep_predictions(), tmp_path_factory.mktemp("layers-report"), n_resamples=50,
                        layers=LayerSection((SWEEP,), WEIGHTS))


def test_the_layers_section_holds_the_sweep_table_plots_and_weights(page) -> None:  # type: ignore[no-untyped-def]
    out = page.out_dir
    assert {"layer_impact_text", "layer_accuracy_text", "layer_weights"} <= set(page.plots)
    for name in ("layer_impact_text", "layer_accuracy_text", "layer_weights"):
        assert (out / f"{name}.png").stat().st_size > 1000 and (out / f"{name}.svg").is_file()
    # the table is the one featcache ablate --layers prints: the same rows from the same analysis calls
    preds = sweep_predictions()
    analysis = Analysis(preds.select(model=list(SWEEP.models)))
    attacks = [c for c in analysis.conditions() if c != "clean"]
    table = format_layer_table(layer_rows(analysis, SWEEP.layers, attacks=attacks, n_resamples=50), attacks=attacks)
    md = page.tables_md.read_text(encoding="utf-8")
    assert "## Layers" in md and "### text-layers" in md and table in md
    assert "### Layer weights" in md and "| text | 0.200 ± 0.010 | 0.300 ± 0.020 | 0.500 ± 0.030 | 2 | 10 |" in md
    assert "| multimodal | 0.500 ± 0.010 | 0.300 ± 0.020 | 0.200 | 0 | 10 |" in md  # NaN std: no ±
    assert "ablate:" not in md.split("## Layers")[0]  # the sweep is left out of the paper's tables
    summary = page.summary_md.read_text(encoding="utf-8")
    assert "## Layers" in summary and "**text-layers**" in summary and "best clean Avg. at layer 2" in summary
    results = page.results_csv.read_text(encoding="utf-8")
    assert all(abl.model in results for abl in LAYER_ABLATIONS)  # results.csv keeps every model
    layers_csv = (out / "layers.csv").read_text(encoding="utf-8").splitlines()
    assert layers_csv[0] == "sweep,layer,model,statistic,condition,mean,std,ci_low,ci_high"
    assert len(layers_csv) == 1 + 3 * (2 + len(attacks))
    assert len((out / "layer_weights.csv").read_text(encoding="utf-8").splitlines()) == 1 + 6
    html = page.html.read_text(encoding="utf-8")
    section = html.split('<section id="layers" class="part details">', 1)[1].split("</section>", 1)[0]
    assert "<h2>Layers</h2>" in section and '<a href="#layers">Layers</a>' in html
    assert section.count('src="data:image/png;base64,') == 3 and 'href="layer_impact_text.svg"' in section
    assert html.count('src="data:image/png;base64,') == len(page.plots)


def test_the_section_is_byte_reproducible_and_drawn_again_by_featcache_report(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    again = write_report(sweep_predictions(), tmp_path / "again", n_resamples=50, layers=LayerSection((SWEEP,), WEIGHTS))
    for name in ("layer_impact_text", "layer_accuracy_text", "layer_weights"):
        for ext in ("png", "svg"):
            assert (page.out_dir / f"{name}.{ext}").read_bytes() == (again.out_dir / f"{name}.{ext}").read_bytes()
    assert page.html.read_bytes() == again.html.read_bytes()
    section = read_layer_section(page.layers)
    assert section is not None and section.sweeps == (SWEEP,) and section.weights[0] == WEIGHTS[0]
    # featcache report finds layers.json beside the predictions
    saved = tmp_path / "saved"
    saved.mkdir()
    sweep_predictions().save(saved / "predictions.h5")
    (saved / "layers.json").write_bytes(page.layers.read_bytes())
    r = CliRunner().invoke(cli, ["report", "--predictions", str(saved / "predictions.h5"), "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    assert "## Layers" in (tmp_path / "r" / "tables.md").read_text(encoding="utf-8")
    assert (tmp_path / "r" / "layer_impact_text.png").is_file() and (tmp_path / "r" / "layers.json").is_file()
    # a report without the section into the same folder removes its layers.json, not a file of someone else's
    write_report(sweep_predictions(), tmp_path / "r", n_resamples=0, plots=False)
    assert not (tmp_path / "r" / "layers.json").exists()
    (saved / "layers.json").write_text('{"format": "other"}', encoding="utf-8")
    line = one_line_error(CliRunner().invoke(cli, ["report", "--predictions", str(saved / "predictions.h5")]))
    assert "layers.json: not a featcache layers file" in line, line


def test_the_layer_heatmap_in_headless_chromium(page, chromium: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from cdp import Browser

    with Browser(chromium, width=1280, height=900) as br:
        br.open(page.html)
        assert br.eval("document.querySelector('#layers h2').textContent") == "Layers"
        assert br.eval("document.querySelector('#layers-text h3').textContent") == "text-layers"
        imgs = br.eval("""Array.from(document.querySelectorAll('#layers figure.plot')).map((f) => [f.id,
                          f.querySelector('img').complete, f.querySelector('img').naturalWidth])""")
        assert [i[0] for i in imgs] == ["plot-layer_impact_text", "plot-layer_accuracy_text", "plot-layer_weights"]
        assert all(done and width > 600 for _, done, width in imgs), imgs
        box = br.eval("(() => { const r = document.querySelector('#plot-layer_impact_text img').getBoundingClientRect();"
                      " return [r.width, r.height]; })()")
        assert box[0] > 300 and box[1] > 100  # shown, not collapsed
        assert br.eval("document.querySelectorAll('#layers table').length") == 3  # the sweep's and two weight tables
        assert br.eval("document.querySelector('#layers table tbody tr').cells.length") == 3 + 3
        assert br.errors == [], br.errors


# ------------------------------------------------------------------------------------------------
# a tiny study: featcache ablate --layers all, then featcache evaluate --ablation text-layers
# ------------------------------------------------------------------------------------------------


def _common(env: dict[str, Path], layered: dict[str, Path]) -> list[str]:  # noqa: F811
    return ["--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(layered["cache"]), "--text-backbone",
            str(env["bert"]), "--audio-backbone", str(env["w2v"]), "--frozen", "--seeds", "0", "--head-epochs", "4",
            "--layers", "all"]


def test_evaluate_adds_a_layer_sweep_to_the_report(env: dict[str, Path], layered: dict[str, Path],  # noqa: F811
                                                   tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(cli, ["extract", "--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(layered["cache"]),
                            "--text-backbone", str(env["bert"]), "--modality", "text", "--frozen", "--layers", "all",
                            "--variant", "no-text", "--workers", "0", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    common = _common(env, layered)
    r = runner.invoke(cli, ["ablate", *common, "--modalities", "text", "--condition", "no-text"])
    assert r.exit_code == 0, r.output
    printed = [line for line in r.output.splitlines() if line.startswith("|")]
    assert re.search(r"in a report: featcache evaluate .*--layers all.* --ablation text-layers$", r.output.strip()), r.output
    header = next(line for line in r.output.splitlines() if ", on each of 3 hidden states;" in line).split("\r")[-1].strip()
    r = runner.invoke(cli, ["train-heads", *common])
    assert r.exit_code == 0, r.output
    out = tmp_path / "report"
    r = runner.invoke(cli, ["evaluate", *common, "--condition", "no-text", "--ablation", "text-layers", "--out", str(out)])
    assert r.exit_code == 0, r.output
    md = (out / "tables.md").read_text(encoding="utf-8")
    layers_md = md.split("## Layers", 1)[1]
    assert header in layers_md  # the same head, layers, folds, seeds and resamples
    assert [line for line in layers_md.splitlines() if line.startswith("|")] == printed  # the same numbers
    assert "ablate:" not in md.split("## Layers", 1)[0]
    for name in ("layer_impact_text", "layer_accuracy_text"):
        assert (out / f"{name}.png").is_file() and (out / f"{name}.svg").is_file()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert '<section id="layers" class="part details"><h2>Layers</h2>' in html and 'id="plot-layer_impact_text"' in html
    preds = Predictions.load(out / "predictions.h5")
    assert {m for m in preds.unique("model") if m.startswith("ablate:")} == {
        f"ablate:{s}" for s in re.findall(r"text-layer\d-[0-9a-f]{8}", (out / "layers.json").read_text(encoding="utf-8"))}
    # `layers` names every sweep of the study (one here); a label without a sweep is one line naming the sweeps
    r = runner.invoke(cli, ["evaluate", *common, "--condition", "no-text", "--ablation", "layers", "--out",
                            str(tmp_path / "every")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "every" / "tables.md").read_text(encoding="utf-8").split("## Layers", 1)[1] == layers_md
    line = one_line_error(runner.invoke(cli, ["evaluate", *common, "--ablation", "audio-layers", "--out", str(tmp_path / "x")]))
    assert "ablation (--ablation audio-layers): no layer sweep of that label" in line and "(sweeps: text-layers)" in line
    no_layers = [a for a in common if a not in ("--layers", "all")]
    line = one_line_error(runner.invoke(cli, ["evaluate", *no_layers, "--ablation", "layers", "--out", str(tmp_path / "x")]))
    assert "layer sweeps are kept with the study of layer-wise vectors" in line, line
    assert not (tmp_path / "x").exists()


def test_a_weighted_study_report_shows_the_learned_layer_weights(env: dict[str, Path], layered: dict[str, Path],  # noqa: F811
                                                                 tmp_path: Path) -> None:
    from featcache import api
    from featcache.heads.layers import head_layer_weights

    common = [*_common(env, layered), "--layer", "weighted"]
    r = CliRunner().invoke(cli, ["train-heads", *common, "--models", "text,audio,multimodal,late"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "weighted"
    r = CliRunner().invoke(cli, ["evaluate", *common, "--condition", "clean", "--out", str(out)])
    assert r.exit_code == 0, r.output
    section = read_layer_section(out / "layers.json")
    assert section is not None and section.sweeps == ()
    got = {(w.model, w.modality): w for w in section.weights}
    assert set(got) == {("text", "text"), ("audio", "audio"), ("multimodal", "text"), ("multimodal", "audio"),
                        ("late", "text"), ("late", "audio")}
    study = api.open_study(corpus=f"iemocap:{env['corpus']}", cache_dir=layered["cache"], text_backbone=str(env["bert"]),
                           audio_backbone=str(env["w2v"]), frozen=True, seeds=(0,), head_epochs=4, layers="all",
                           layer="weighted")
    heads = [head_layer_weights(study.load_head("multimodal", fold=k, seed=0))["text"] for k in study.folds]
    w = got[("multimodal", "text")]
    assert w.layers == (0, 1, 2) and w.heads == len(study.folds)
    np.testing.assert_allclose(w.mean, np.mean(heads, axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(w.std, np.std(heads, axis=0, ddof=1), rtol=0, atol=1e-12)
    assert got[("late", "text")].mean == got[("text", "text")].mean  # late fuses the weighted text head
    md = (out / "tables.md").read_text(encoding="utf-8")
    assert "## Layers" in md and "### Layer weights" in md and "| Model (text) | Layer 0 | Layer 1 | Layer 2 |" in md
    assert (out / "layer_weights.png").is_file() and (out / "layer_weights.svg").is_file()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="layer-weights"' in html and 'id="plot-layer_weights"' in html


def test_a_layer_wise_run_writes_every_layer_into_the_report(env: dict[str, Path], chromium: str,  # noqa: F811
                                                              tmp_path: Path) -> None:
    """`featcache run --layers all`: the text and the audio head are trained on each layer too, and report.html
    shows their sweeps (heatmap and accuracy per layer) in a real headless Chromium."""
    from cdp import Browser

    out = tmp_path / "report"
    r = CliRunner().invoke(cli, ["run", "--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(tmp_path / "cache"),
                                 "--text-backbone", str(env["bert"]), "--audio-backbone", str(env["w2v"]), "--frozen",
                                 "--seeds", "0", "--head-epochs", "2", "--layers", "all", "--variant", "no-text",
                                 "--variant", "no-audio", "--workers", "0", "--device", "cpu", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "and the text and audio head on each of 3, 3 layers" in r.output, r.output
    for name in ("layer_impact_text", "layer_impact_audio", "layer_accuracy_text", "layer_accuracy_audio"):
        assert (out / f"{name}.png").is_file(), name
    with Browser(chromium, width=1280, height=900) as br:
        br.open(out / "report.html")
        assert br.eval("document.querySelector('#layers h2').textContent") == "Layers"
        shown = br.eval("""Array.from(document.querySelectorAll('#layers figure.plot img')).map((i) =>
                           [i.closest('figure').id, i.complete && i.naturalWidth > 0])""")
        assert {f for f, ok in shown if ok} >= {"plot-layer_impact_text", "plot-layer_impact_audio"}, shown
        assert br.errors == [], br.errors
