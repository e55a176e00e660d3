"""report.html: what the page holds, its audio and browser files, the audio replayed from the store's
records, the command line's options, and the page in a real headless Chromium (screenshot, tables,
plots, audio, sorting, the browser's filters and pages, no console error)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from test_report import CONDITIONS, DROP, synthetic

from featcache.cache import EntryKey, FeatureStore
from featcache.cli import cli
from featcache.conditions import lookup
from featcache.data import read_iemocap
from featcache.metrics import Analysis, Predictions
from featcache.perturb import get_variant
from featcache.perturb.inspect import show_variant
from featcache.report import StoreAudio, mark_changes, severity_sweeps, write_report

SWEEP = {"audio": ("snr-20", "snr-5", "snr-0"), "multimodal": ("snr-20", "snr-5", "snr-0")}
LIMIT = 5 * 1024 * 1024


def sweep_predictions() -> Predictions:
    DROP.update({"snr-20": 2, "snr-5": 9, "snr-0": 15})
    conds = {m: c + SWEEP.get(m, ()) for m, c in CONDITIONS.items()}
    return synthetic(conditions=conds)


def tones(utt_id: str, condition: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A stand-in audio source: a 0.5 s tone, a higher one when the condition perturbs the audio."""
    t = np.arange(8000) / 16000
    clean = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    cond = lookup(condition)
    if cond is None or cond.audio is None:
        return clean, None
    return clean, (0.1 * np.sin(2 * np.pi * 233 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("html")
    return write_report(sweep_predictions(), out, title="Synthetic <report>", n_resamples=100, audio=tones)


# ----------------------------------------------------------------------------------------------
# the page and its files
# ----------------------------------------------------------------------------------------------


def test_page_is_self_contained(page) -> None:  # type: ignore[no-untyped-def]
    text = page.html.read_text(encoding="utf-8")
    assert "Synthetic &lt;report&gt;" in text  # escaped
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "nothing is fetched from the network"
    assert "@import" not in text and "url(http" not in text
    assert text.count('src="data:image/png;base64,') == len(page.plots)
    for name in page.plots:
        assert f'href="{name}.svg"' in text and (page.out_dir / f"{name}.svg").is_file()
    for rel in re.findall(r'src="((?:audio|browser)/[^"]+)"', text):
        assert (page.out_dir / rel).is_file(), rel


def test_page_holds_tables_summary_plots_examples(page) -> None:  # type: ignore[no-untyped-def]
    text = page.html.read_text(encoding="utf-8")
    for key in ("table3", "table4", "table5", "table6", "table6b-late", "beyond-1"):
        assert f'id="{key}"' in text
    beyond = text.count('<figure class="table" id="beyond-')
    assert beyond == len(Analysis(sweep_predictions()).models())  # "Beyond the paper": one table per model
    assert text.count('<table class="sortable">') == 5 + beyond
    assert "Under each impact: its 95% paired bootstrap interval" in text and "Fusion − S. Modal (95% CI)" in text
    assert text.count('<figure class="question"') >= 3 and "RQ1" in text and "RQ2" in text and "RQ3" in text
    assert {"impact_paper", "impact_fusion", "impact_beyond", "severity_noise-snr_db", "flip_rate",
            "clean_accuracy"} <= set(page.plots)
    assert 'id="table7"' in text and 'id="table8"' in text
    assert '<mark class="changed" title="good">[MASK]</mark>' in text  # the masked adjective, its original in the tooltip


def test_audio_files_only_for_the_examples(page) -> None:  # type: ignore[no-untyped-def]
    files = sorted(p.name for p in (page.out_dir / "audio").iterdir())
    pitch = {u for (u, c) in page.audio if c == "pitch"}
    assert pitch and all(page.audio[(u, "pitch")].perturbed for u in pitch)
    assert all(page.audio[(u, c)].perturbed is None for (u, c) in page.audio if c in ("adj", "noun"))
    utts = {u for u, _ in page.audio}
    assert len(files) == len(utts) + len(pitch)
    info = sf.info(str(page.out_dir / page.audio[next(iter(page.audio))].clean))
    assert (info.samplerate, info.channels) == (16000, 1)


def test_browser_files_are_small_and_complete(page) -> None:  # type: ignore[no-untyped-def]
    text = page.html.read_text(encoding="utf-8")
    manifest = json.loads(re.search(r'<script type="application/json" id="browser-data">(.*?)</script>', text,
                                    re.S).group(1))
    preds = sweep_predictions()
    assert [c["name"] for c in manifest["conditions"]] == Analysis(preds).conditions()
    adj = next(c for c in manifest["conditions"] if c["name"] == "adj")
    assert sum(adj["n"].values()) == len(set(preds.select(condition="adj").utt_id))
    assert adj["unimodal"] == [manifest["models"].index("text")]
    for path in [page.html, *page.browser]:
        assert path.stat().st_size < LIMIT
    rows = json.loads(re.search(r",(\[.*\])\);", (page.out_dir / adj["files"]["1"]).read_text(encoding="utf-8")).group(1))
    _, _, clean, pert, per_model = rows[0]
    assert clean == "utterance 0 was a rather good one" and pert == "utterance 0 was a rather [MASK] one"
    assert len(per_model) == len(manifest["models"]) and per_model[manifest["models"].index("audio")] is None
    _, p1, _, p2, clean_pred = per_model[manifest["models"].index("text")]
    assert p1 >= p2 and 0 <= clean_pred < 4


def test_without_audio_the_page_says_so_once(tmp_path: Path) -> None:
    paths = write_report(synthetic(seeds=(0,)), tmp_path, n_resamples=0, plots=False)
    text = paths.html.read_text(encoding="utf-8") if paths.html else ""
    assert text.count("Audio players are left out") == 1 and "<audio controls preload=\"metadata\"" not in text
    assert not (tmp_path / "audio").exists() or not any((tmp_path / "audio").iterdir())


def test_unreadable_audio_leaves_out_its_players_with_a_note(tmp_path: Path) -> None:
    from featcache.errors import DataError
    from featcache.report import example_tables

    preds = synthetic(seeds=(0,), conditions={m: CONDITIONS[m] for m in ("text", "audio", "multimodal")})
    bad = example_tables(Analysis(preds))[0].examples[0].utt_id

    def broken(utt_id: str, condition: str) -> tuple[np.ndarray, np.ndarray | None]:
        if utt_id == bad:
            raise DataError(f"{utt_id}.wav: unreadable wav; re-export it")
        return tones(utt_id, condition)

    paths = write_report(preds, tmp_path, n_resamples=0, plots=False, audio=broken)
    assert paths.audio and all(u != bad for u, _ in paths.audio)
    assert sum(f"{bad} under" in n and "unreadable wav" in n for n in paths.notes) == 1


def test_mark_changes() -> None:
    assert mark_changes("a good day", "a [MASK] day") == 'a <mark class="changed" title="good">[MASK]</mark> day'
    assert mark_changes("x < y", "x < y") == "x &lt; y"
    assert "<del" in mark_changes("one two three", "one three")


def test_severity_sweeps_need_two_strengths() -> None:
    sweeps = severity_sweeps(["clean", "noise", "snr-20", "snr-5", "asr-0.2", "pitch+adj", "adj"])
    assert [(s.kind, s.param, [c for _, c in s.points]) for s in sweeps] == [("noise", "snr_db", ["snr-5", "snr-20"])]
    assert sweeps[0].harsher_when_lower


# ----------------------------------------------------------------------------------------------
# audio replayed from the store, and the command line
# ----------------------------------------------------------------------------------------------


def corpus_predictions(corpus) -> Predictions:  # type: ignore[no-untyped-def]
    """Clean, pitch and adj for every utterance: the multimodal model right, the audio and text models wrong."""
    rows = []
    for k, u in enumerate(corpus.utterances):
        y = corpus.label_index(u.label)
        for model, cond, ok in (("text", "clean", True), ("audio", "clean", True), ("multimodal", "clean", True),
                                ("audio", "pitch", False), ("multimodal", "pitch", True), ("text", "adj", False),
                                ("multimodal", "adj", True)):
            pred = y if ok else (y + 1) % 4
            probs = np.full(4, 0.1, dtype=np.float32)
            probs[pred] = 0.7
            rows.append((int(u.session) - 1, u.session, 0, model, cond, u.id, y, pred, probs, cond != "clean"))
    cols = list(zip(*rows))
    return Predictions(fold=np.array(cols[0]), session=np.array(cols[1]), seed=np.array(cols[2]),
                       model=np.array(cols[3]), condition=np.array(cols[4]), utt_id=np.array(cols[5]),
                       label=np.array(cols[6]), pred=np.array(cols[7]), probs=np.stack(cols[8]),
                       affected=np.array(cols[9]), labels=corpus.labels,
                       texts={("clean", u.id): u.text or "" for u in corpus.utterances})


def store_with_pitch_records(root: Path, corpus) -> FeatureStore:  # type: ignore[no-untyped-def]
    """A store holding one audio entry of ``pitch`` whose records were drawn as extraction draws them."""
    from featcache.data import load_audio

    store = FeatureStore(root)
    pitch = get_variant("pitch")
    ids = sorted(u.id for u in corpus.utterances)
    key = EntryKey(run="audio-fake-frozen", fold=None, variant="pitch", identity={"variant_seed": 0})
    with store.writer(key, ids=ids, provenance={"modality": "audio"}) as w:
        recs = [pitch.draw(load_audio(corpus.by_id(u).audio, sr=16000), utt_id=u, seed=0) for u in ids]
        w.add(ids, np.zeros((len(ids), 4), dtype=np.float32), records=recs)
    return store


def test_store_audio_replays_exactly_what_variants_show_writes(small_iemocap: Path, tmp_path: Path) -> None:
    corpus = read_iemocap(small_iemocap)
    store = store_with_pitch_records(tmp_path / "cache", corpus)
    utt = corpus.utterances[3].id
    _, perturbed = StoreAudio(corpus, store, variant_seed=0)(utt, "pitch")
    show_variant(corpus, utt, variant="pitch", seed=0, out=tmp_path / "shown.wav")
    expected, sr = sf.read(str(tmp_path / "shown.wav"), dtype="float32")
    assert sr == 16000 and perturbed is not None
    np.testing.assert_array_equal(perturbed, expected)
    assert StoreAudio(corpus, store)(utt, "pitch+adj")[1] is not None  # the audio part of a combination
    assert StoreAudio(corpus, store)(utt, "adj")[1] is None  # a text attack leaves the audio alone
    source = StoreAudio(corpus, store, variant_seed=1)  # no record drawn with that seed
    assert source(utt, "pitch")[1] is None and source.missing == [f"{utt} under pitch"]


def test_report_command_writes_audio_players_with_corpus_and_store(small_iemocap: Path, tmp_path: Path) -> None:
    corpus = read_iemocap(small_iemocap)
    store_with_pitch_records(tmp_path / "cache", corpus)
    preds = tmp_path / "predictions.h5"
    corpus_predictions(corpus).save(preds)
    runner = CliRunner()
    res = runner.invoke(cli, ["report", "--predictions", str(preds), "--out", str(tmp_path / "plain")])
    assert res.exit_code == 0, res.output
    assert res.output.count("Audio players are left out") == 1
    assert f"open: {tmp_path / 'plain' / 'report.html'}" in res.output
    res = runner.invoke(cli, ["report", "--predictions", str(preds), "--out", str(tmp_path / "audio"),
                              "--corpus", f"iemocap:{small_iemocap}", "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert "left out" not in res.output
    page = (tmp_path / "audio" / "report.html").read_text(encoding="utf-8")
    players = re.findall(r'<audio controls preload="metadata" src="([^"]+)"', page)
    assert any("--pitch." in p for p in players) and len(players) >= 10
    for rel in players:
        assert sf.info(str(tmp_path / "audio" / rel)).samplerate == 16000


# ----------------------------------------------------------------------------------------------
# the page in a real browser
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    from cdp import find_chromium

    binary, why = find_chromium(install=True)
    if binary is None:
        if os.environ.get("FEATCACHE_REQUIRE_CHROMIUM") == "1":  # the CI installs it: missing is a failure there
            pytest.fail(f"headless Chromium required but not available: {why}")
        pytest.skip(f"headless Chromium test skipped: {why}")
    return binary


WAIT_BROWSER = """new Promise((resolve, reject) => {
  const t0 = Date.now();
  (function poll() {
    const s = document.getElementById('b-status').textContent;
    if (s && !s.startsWith('loading')) return resolve(s);
    if (Date.now() - t0 > 10000) return reject(new Error('browser still ' + s));
    setTimeout(poll, 50);
  })();
})"""

LOAD_AUDIO = """Promise.all(Array.from(document.querySelectorAll('#examples audio')).map((a) => new Promise((resolve) => {
  const done = (ok) => resolve([a.getAttribute('src'), ok ? a.duration : String(a.error && a.error.code)]);
  if (a.readyState >= 1) return done(true);
  a.addEventListener('loadedmetadata', () => done(true), { once: true });
  a.addEventListener('error', () => done(false), { once: true });
  a.preload = 'auto';
  a.load();
})))"""

COLUMN = """Array.from(document.querySelectorAll('#table4 tbody tr:not(.section)')).map((r) => r.cells[%d].getAttribute('data-v'))"""


def test_page_in_headless_chromium(page, chromium: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from cdp import Browser
    from matplotlib.image import imread

    preds = sweep_predictions()
    with Browser(chromium, width=1280, height=900) as br:
        br.open(page.html)
        br.eval(WAIT_BROWSER)
        shot = br.screenshot(tmp_path / "report.png")
        img = imread(shot)
        assert img.shape[:2] == (900, 1280) and float(np.std(img)) > 0.05

        # tables, plots, audio elements present; every plot decoded; every audio file loads
        n_beyond = len(Analysis(preds).models())
        assert br.eval("document.querySelectorAll('table.sortable').length") == 5 + n_beyond
        widths = br.eval("Array.from(document.querySelectorAll('figure.plot img')).map((i) => i.naturalWidth)")
        assert len(widths) == len(page.plots) and min(widths) > 600
        loaded = br.eval(LOAD_AUDIO)
        expected = {f.clean for f in page.audio.values()} | {f.perturbed for f in page.audio.values() if f.perturbed}
        assert {src for src, _ in loaded} == expected
        assert all(isinstance(d, (int, float)) and d == pytest.approx(0.5, abs=0.01) for _, d in loaded), loaded

        # sorting: Avg. of Table 4 ascending, descending, then back to the table's order
        col = br.eval("Array.from(document.querySelectorAll('#table4 thead th')).findIndex((th) => th.textContent === 'Avg.')")
        original = br.eval(COLUMN % col)
        br.eval(f"document.querySelectorAll('#table4 thead th')[{col}].click()")
        asc = [float(v) for v in br.eval(COLUMN % col)]
        assert asc == sorted(asc) and asc != [float(v) for v in original]
        br.eval(f"document.querySelectorAll('#table4 thead th')[{col}].click()")
        assert [float(v) for v in br.eval(COLUMN % col)] == sorted(asc, reverse=True)
        br.eval(f"document.querySelectorAll('#table4 thead th')[{col}].click()")
        assert br.eval(COLUMN % col) == original

        # the browser: condition adj, "fusion right, unimodal wrong" gives what the predictions say
        sub = preds.select(seed=0, condition="adj")
        right = {(m, u): p == y for m, u, p, y in zip(sub.model, sub.utt_id, sub.pred, sub.label)}
        want = sum(1 for u in set(sub.utt_id) if right[("multimodal", u)] and not right[("text", u)])
        k = [c["name"] for c in br.eval("featcacheBrowser.manifest.conditions")].index("adj")
        br.eval(f"""(() => {{ const c = document.getElementById('b-cond'); c.value = '{k}';
                   c.dispatchEvent(new Event('change'));
                   const o = document.getElementById('b-outcome'); o.value = 'fuw';
                   o.dispatchEvent(new Event('change')); }})()""")
        br.eval(WAIT_BROWSER)
        assert br.eval("featcacheBrowser.rows().length") == want > 0
        assert br.eval("document.querySelectorAll('#b-table tbody tr').length") == want
        assert br.eval("document.querySelectorAll('#b-table mark.changed').length") > 0
        # all utterances under clean, session 2: one page of 12
        br.eval("""(() => { const o = document.getElementById('b-outcome'); o.value = '';
                   const c = document.getElementById('b-cond'); c.value = '0';
                   const s = document.getElementById('b-session'); s.value = '2';
                   for (const e of [o, c, s]) e.dispatchEvent(new Event('change')); })()""")
        assert br.eval(WAIT_BROWSER).startswith("12 of 12 utterances under clean in session 2")
        # every condition and session: 60 rows, two pages
        br.eval("""(() => { const s = document.getElementById('b-session'); s.value = '';
                   s.dispatchEvent(new Event('change')); })()""")
        br.eval(WAIT_BROWSER)
        assert br.eval("document.getElementById('b-page').textContent") == "page 1 of 2"
        br.eval("document.getElementById('b-next').click()")
        assert br.eval("document.querySelectorAll('#b-table tbody tr').length") == 10
        # an utterance with example audio has its players in the browser too
        utt = next(u for u, c in page.audio if c == "pitch")
        k = [c["name"] for c in br.eval("featcacheBrowser.manifest.conditions")].index("pitch")
        br.eval(f"""(() => {{ const c = document.getElementById('b-cond'); c.value = '{k}';
                   c.dispatchEvent(new Event('change'));
                   const q = document.getElementById('b-search'); q.value = '{utt}';
                   q.dispatchEvent(new Event('input')); }})()""")
        br.eval(WAIT_BROWSER)
        srcs = br.eval("Array.from(document.querySelectorAll('#b-table audio')).map((a) => a.getAttribute('src'))")
        assert srcs == [page.audio[(utt, "pitch")].clean, page.audio[(utt, "pitch")].perturbed]
        assert br.errors == [], br.errors


OVERVIEW_BOX = """(() => { const s = document.getElementById('overview'); const h = s.querySelector('h2');
  const i = s.querySelector('#plot-overview img');
  return [h.textContent, h.getBoundingClientRect().top, i.getBoundingClientRect().top, i.complete, i.naturalWidth,
          i.getBoundingClientRect().width, s.scrollWidth, document.documentElement.scrollWidth,
          document.querySelectorAll('#overview .overview-acc tbody tr').length,
          document.querySelector('main > section').id]; })()"""

FIRST_SCREEN = """(() => { window.scrollTo(0, 0);
  const box = (e) => { const r = e.getBoundingClientRect(); return [r.top, r.bottom, r.right]; };
  return { heatmap: box(document.querySelector('#overview #plot-overview img')),
           questions: Array.from(document.querySelectorAll('#overview figure.question')).map(
             (f) => [f.id, ...box(f), f.querySelectorAll('tbody tr').length]) }; })()"""

OVERFLOW = """(() => { for (const d of document.querySelectorAll('details')) d.open = true;
  const w = document.documentElement.clientWidth, out = [];
  for (const e of document.querySelectorAll('main > section, .scroll, table, figure'))
    if (e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().right > w + 1)
      out.push((e.id || e.closest('[id]').id) + ' ' + e.tagName + ' ' + e.scrollWidth + '/' + e.clientWidth);
  return [out, document.documentElement.scrollWidth]; })()"""

NAV = """(() => { const head = document.querySelector('header').getBoundingClientRect().height;
  const sections = Array.from(document.querySelectorAll('main > section')).map((s) => s.id);
  const links = Array.from(document.querySelectorAll('header nav a')).map((a) => a.getAttribute('href'));
  const landed = links.map((href) => { const a = document.querySelector('header nav a[href="' + href + '"]');
    a.click(); const t = document.querySelector(href);
    const top = t ? t.getBoundingClientRect().top : NaN;
    const atEnd = window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 2;
    return [href, t ? t.tagName : null, Math.round(top), atEnd, top <= head + 60 && top >= 0]; });
  return [sections, links, landed]; })()"""


def test_overview_first_in_headless_chromium(page, chromium: str) -> None:  # type: ignore[no-untyped-def]
    """The Overview (the impact heatmap, clean accuracy per model and RQ1-RQ3 as tables) is the page's first
    section and fits the first screen of a 1400 x 900 window; no part of the page is wider than the window,
    with every collapsed part opened; every navigation link lands on its section; the console stays clean."""
    from cdp import Browser

    assert (page.out_dir / "overview.png").is_file() and (page.out_dir / "overview.svg").is_file()
    assert "overview" in page.plots
    summary = page.summary_md.read_text(encoding="utf-8")
    assert "## Overview" in summary and "| multimodal |" in summary
    analysis = Analysis(sweep_predictions())
    with Browser(chromium, width=1400, height=900) as br:
        br.open(page.html)
        head, h_top, img_top, done, natural, shown, width, doc_width, models, first = br.eval(OVERVIEW_BOX)
        assert head == "Overview" and first == "overview"
        assert 0 <= h_top < img_top < 900, (h_top, img_top)
        assert done and natural > 0 and shown > 600
        assert width <= 1400 and doc_width <= 1400, (width, doc_width)
        assert models == len(analysis.models())
        assert br.eval("document.querySelector('header nav a').getAttribute('href')") == "#overview"

        # the heatmap and the research questions' tables lie inside the first 900 px
        screen = br.eval(FIRST_SCREEN)
        assert 0 < screen["heatmap"][1] <= 900, screen
        questions = {q[0]: q for q in screen["questions"]}
        assert {"q-rq1", "q-rq2", "q-rq3"} <= set(questions), screen
        for key in ("q-rq1", "q-rq2", "q-rq3"):
            _, top, bottom, right, rows = questions[key]
            assert 0 < top < bottom <= 900 and right <= 1400, (key, questions[key])
            assert rows == len(analysis.fusion_models()), (key, rows)  # one row per fusion model

        # nothing wider than the window, the utterance browser's table (loaded) and every opened part included
        br.eval(WAIT_BROWSER)
        wide, doc_width = br.eval(OVERFLOW)
        assert wide == [] and doc_width <= 1400, (wide, doc_width)

        # every link lands on a section, and every section has a link
        sections, links, landed = br.eval(NAV)
        assert sorted(links) == sorted(f"#{s}" for s in sections), (links, sections)
        for href, tag, top, at_end, on_top in landed:
            assert tag == "SECTION" and (on_top or at_end), (href, tag, top, at_end)
        assert br.errors == [], br.errors


def test_a_report_replaces_only_the_files_it_wrote(tmp_path: Path) -> None:
    """A report into a folder that holds other files keeps them; its own files of an earlier report that it
    does not write again are removed."""
    out = tmp_path / "report"
    mine = [out / "audio" / "my recording.flac", out / "audio" / "notes.wav", out / "browser" / "my-script.js"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not featcache's")
    first = write_report(sweep_predictions(), out, n_resamples=0, plots=False, audio=tones)
    own = {out / f.clean for f in first.audio.values()} | {out / f.perturbed for f in first.audio.values() if f.perturbed}
    assert own and all(p.is_file() for p in own) and first.browser
    second = write_report(synthetic(seeds=(0,)), out, n_resamples=0, plots=False)  # no audio this time
    assert [p.read_bytes() for p in mine] == [b"not featcache's"] * 3
    assert not any(p.exists() for p in own)  # the first report's audio, not written again
    stale = set(map(Path, first.browser)) - set(map(Path, second.browser))
    assert not any(p.exists() for p in stale) and all(Path(p).is_file() for p in second.browser)


def test_examples_md_shows_markup_in_transcripts_as_text() -> None:
    from featcache.report.examples import Example, ExampleRow, render_examples

    attack = "<img src=x onerror=alert(1)> and <b>bold</b> & co"
    top = (("ang", 0.6), ("sad", 0.4))
    ex = Example(utt_id="id`with<tick>", label="<ang>", text="<script>alert(1)</script> hello", margin=0.2,
                 attacks=("adj",), rows=(ExampleRow("clean", None, top, top, True, False),
                                         ExampleRow("adj", attack, top, top, True, False)))
    md = render_examples([ex], number="7", caption="c", model_title="Multimodal", unimodal_title="Text")
    assert "<script>" not in md and "<img" not in md and "<b>" not in md and "<ang>" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt; hello" in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    assert "&amp; co" in md and "**&lt;ang&gt;**" in md
    assert "`` id`with<tick> ``" in md  # a code span (markup inside is not rendered) that holds its backtick


def test_example_audio_files_are_one_per_utterance_id(tmp_path: Path) -> None:
    from featcache.report.audio import write_audio

    ids = ["Ses01_a/b", "Ses01_a_b", "Ses01_a b", ".hidden"]
    files = write_audio(tones, [(u, "pitch") for u in ids], tmp_path)
    clean = [files[u, "pitch"].clean for u in ids]
    perturbed = [files[u, "pitch"].perturbed for u in ids]
    assert len(set(clean)) == len(ids) and len(set(perturbed)) == len(ids)
    assert Path(clean[1]).stem == "Ses01_a_b"  # a safe id keeps its own name
    assert all("/" not in name.split("/", 1)[1] and not name.split("/", 1)[1].startswith(".") for name in clean)
    assert len(list((tmp_path / "audio").iterdir())) == 2 * len(ids)
