"""Where everything lives: the folders and files inside a store, and the per-user model cache.

Every path inside a store is built here (see :mod:`featcache.cache.store` for the layout diagram);
other modules ask a :class:`StoreLayout` (a :class:`~featcache.cache.FeatureStore` is one) instead of
joining names onto the store root themselves.

Converted backbones (the packaged Whisper base, turned from CTranslate2 into a transformers
checkpoint) do not depend on any store, so they live once per user in :func:`model_cache_root`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MODELS_ENV_VAR = "FEATCACHE_MODELS"
"""Environment variable naming the per-user model cache (see :func:`model_cache_root`)."""

STORE_META = "store.json"
FEATURES = "features"
MODELS = "models"
RUNS = "runs"
HEADS = "heads"
ABLATIONS = "ablations"
TEXT_ANALYSIS = "text-analysis"
TRANSCRIPTS = "transcripts"
WEIGHT_HASHES = "weight-hashes.json"

_SLUG = re.compile(r"[^A-Za-z0-9_.+=-]+")


def slug(text: str) -> str:
    """A filesystem-safe rendering of a run or variant name.

    Args:
        text: Any name (``text-minilm-frozen``, ``noise:std=0.1``).

    Returns:
        ``text`` with every run of other characters than letters, digits and ``_.+=-`` replaced by
        ``_`` (``x`` when nothing is left).
    """
    return _SLUG.sub("_", text).strip("_") or "x"


def model_cache_root() -> Path:
    """The per-user folder for converted models, shared by every store.

    Returns:
        ``$FEATCACHE_MODELS`` if set, else ``$XDG_CACHE_HOME/featcache/models`` if that variable holds
        an absolute path (the XDG rule), else ``~/.cache/featcache/models``. Not created here.
    """
    explicit = os.environ.get(MODELS_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "featcache" / "models"


def weight_hashes_file(models_dir: str | os.PathLike[str]) -> Path:
    """The weight-hash cache file inside a models folder (for callers that only have that folder).

    Args:
        models_dir: A store's ``models/`` folder, or any folder meant to hold the cache.

    Returns:
        ``models_dir/weight-hashes.json``.
    """
    return Path(models_dir) / WEIGHT_HASHES


class StoreLayout:
    """The names of every folder and file inside a store root; nothing is created or read.

    :class:`~featcache.cache.FeatureStore` is a layout; code that only has a root path (the text
    analysis cache, ``--cache-dir`` of the ``perturb`` commands) uses ``StoreLayout(root)``.

    Args:
        root: The store directory.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def meta_path(self) -> Path:
        """``store.json``: the store's backend and format version."""
        return self.root / STORE_META

    @property
    def features_dir(self) -> Path:
        """``features/``: the feature entries."""
        return self.root / FEATURES

    @property
    def models_dir(self) -> Path:
        """``models/``: per-store model files (the weight-hash cache).

        Converted backbones are not here but in the per-user :func:`model_cache_root`.
        """
        return self.root / MODELS

    @property
    def weight_hashes_path(self) -> Path:
        """``models/weight-hashes.json``: backbone weight digests by (path, size, mtime)."""
        return weight_hashes_file(self.models_dir)

    @property
    def runs_dir(self) -> Path:
        """``runs/``: fine-tuning runs, one folder each."""
        return self.root / RUNS

    def run_dir(self, run_id: str) -> Path:
        """The folder of one fine-tuning run.

        Args:
            run_id: The run's id (``ft-text-f2-s0-<hash>``), used as the folder name.

        Returns:
            ``runs/<run_id>``.
        """
        return self.runs_dir / run_id

    def run_lock(self, run_id: str) -> Path:
        """The lock file beside a run's folder, held while a process trains or finishes the run (beside
        it, so that the folder of a finished run holds only what the run keeps).

        Args:
            run_id: The run's id.

        Returns:
            ``runs/<run_id>.lock``.
        """
        return self.runs_dir / f"{run_id}.lock"

    def heads_root(self, study_key: str) -> Path:
        """The folder of one study's trained heads.

        Args:
            study_key: The study's key (a digest of what changes its heads).

        Returns:
            ``heads/<study_key>``.
        """
        return self.root / HEADS / study_key

    def heads_dir(self, study_key: str, *, fold: int, seed: int, model: str) -> Path:
        """The folder of one trained head (its weights, config and training state).

        Args:
            study_key: The study's key.
            fold: Fold index.
            seed: Training seed.
            model: Head name (``text``, ``late``, ...).

        Returns:
            ``heads/<study_key>/fold-<fold>/seed-<seed>/<model>``.
        """
        return self.heads_root(study_key) / f"fold-{fold}" / f"seed-{seed}" / model

    def head_records(self) -> list[tuple[Path, dict[str, str | int]]]:
        """Every trained head's record in the store (``result.json``), with the place its folder names.

        Returns:
            ``(record file, place)`` pairs in path order; ``place`` holds ``study``, ``fold``, ``seed`` and
            ``model`` (an ablation's head: ``ablate:<name>``), read from the folder names.
        """
        out: list[tuple[Path, dict[str, str | int]]] = []
        for base, pattern in ((self.root / HEADS, "*/fold-*/seed-*/*/result.json"),
                              (self.root / ABLATIONS, "*/*/fold-*/seed-*/result.json")):
            for path in sorted(base.glob(pattern)) if base.is_dir() else []:
                up = path.parents  # heads: model, seed, fold, key; ablations: seed, fold, name, key
                seed, fold, model = (up[1], up[2], up[0].name) if base.name == HEADS else (up[0], up[1], f"ablate:{up[2].name}")
                if fold.name[5:].isdigit() and seed.name[5:].isdigit():
                    out.append((path, {"fold": int(fold.name[5:]), "seed": int(seed.name[5:]), "model": model,
                                       "study": up[3].name}))
        return out

    def ablations_dir(self, study_key: str) -> Path:
        """The folder of one study's ablations (``featcache ablate``).

        Args:
            study_key: The study's key.

        Returns:
            ``ablations/<study_key>``.
        """
        return self.root / ABLATIONS / study_key

    def ablation_dir(self, study_key: str, name: str) -> Path:
        """The folder of one ablation: its options, and its heads per fold and seed.

        Args:
            study_key: The study's key.
            name: The ablation's name (a label and a digest of its options), made filesystem-safe.

        Returns:
            ``ablations/<study_key>/<name>``.
        """
        return self.ablations_dir(study_key) / slug(name)

    def ablation_head_dir(self, study_key: str, name: str, *, fold: int, seed: int, part: str = "head") -> Path:
        """The folder of one of an ablation's trained heads.

        Args:
            study_key: The study's key.
            name: The ablation's name.
            fold: Fold index.
            seed: Training seed.
            part: ``head`` (the ablation's classifier), or ``text`` / ``audio`` (the unimodal heads a
                late or score fusion is built on).

        Returns:
            ``ablations/<study_key>/<name>/fold-<fold>/seed-<seed>/<part>``.
        """
        return self.ablation_dir(study_key, name) / f"fold-{fold}" / f"seed-{seed}" / part

    @property
    def text_analysis_dir(self) -> Path:
        """``text-analysis/``: cached spaCy analyses of text sets."""
        return self.root / TEXT_ANALYSIS

    def text_analysis_path(self, model: str, key: str) -> Path:
        """The cache file of one analysis.

        Args:
            model: spaCy pipeline name or directory (its last path component names the file).
            key: Digest of the model, its version and the analysed texts.

        Returns:
            ``text-analysis/<model>-<key>.json``, the model name made filesystem-safe.
        """
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(model).name)
        return self.text_analysis_dir / f"{safe}-{key}.json"

    @property
    def transcripts_dir(self) -> Path:
        """``transcripts/``: cached speech recognition transcripts (``featcache transcribe``)."""
        return self.root / TRANSCRIPTS

    def transcript_path(self, recognizer: str, key: str) -> Path:
        """The transcript file of one recogniser, its decoding settings and one corpus.

        Args:
            recognizer: Recogniser name or directory (its last path component names the file).
            key: Digest of the recogniser's weights, the decoding settings and the corpus name.

        Returns:
            ``transcripts/<recognizer>-<key>.json``, the name made filesystem-safe.
        """
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(recognizer).name)
        return self.transcripts_dir / f"{safe}-{key}.json"

    def folders(self) -> tuple[Path, ...]:
        """Every top-level folder a store may hold (present or not), in a fixed order."""
        return (self.features_dir, self.models_dir, self.runs_dir, self.root / HEADS, self.root / ABLATIONS,
                self.text_analysis_dir, self.transcripts_dir)
