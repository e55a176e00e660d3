"""The head kinds (:data:`HEADS`): one builder per kind, and each head's JSON config, from which it is
built again (:func:`head_config`, :func:`head_from_config`). The models and ablation fusions that use
each kind are named in :data:`featcache.paper.MODEL_HEADS` and :data:`featcache.paper.ABLATION_FUSIONS`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from featcache import __version__
from featcache.heads.bodies import UnimodalHead, audio_head, text_head
from featcache.heads.fusion import GatedFusion, LateFusion, MultimodalHead, ScoreFusion
from featcache.heads.layers import LayerWeightedHead, is_unimodal
from featcache.paper import AUDIO_DROPOUT, TEXT_DROPOUT

CONFIG_FORMAT = "featcache-head"
CONFIG_VERSION = 1


def _need(name: str, value: int | None, kind: str) -> int:
    if value is None:
        raise ValueError(f"a {kind!r} head needs {name}")
    return value


def _sub_head(value: object, dim: int | None, n_classes: int, modality: str) -> UnimodalHead:
    """A unimodal head given as a module, a config dict, or None (fresh paper head)."""
    if is_unimodal(value):
        return value  # type: ignore[return-value]
    if isinstance(value, dict):
        head = head_from_config(value)
        if not is_unimodal(head):
            raise TypeError(f"the {modality} head's config must describe a unimodal head")
        return head  # type: ignore[return-value]
    if value is None:
        dim = _need(f"{modality}_dim", dim, "fusion")
        return text_head(dim, n_classes) if modality == "text" else audio_head(dim, n_classes)
    raise TypeError(f"{modality}_head must be a UnimodalHead, a config dict or None, got {type(value).__name__}")


def _build_weighted(*, text_dim: int | None, audio_dim: int | None, n_classes: int, head: object,
                    text_layers: int | None = None, audio_layers: int | None = None) -> nn.Module:
    inner = head if isinstance(head, nn.Module) else head_from_config(head)  # type: ignore[arg-type]
    return LayerWeightedHead(inner, text_layers=text_layers, audio_layers=audio_layers)


def _build_text(*, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    options.setdefault("dropout", TEXT_DROPOUT)
    return UnimodalHead(_need("text_dim", text_dim, "text"), n_classes, modality="text", **options)


def _build_audio(*, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    options.setdefault("dropout", AUDIO_DROPOUT)
    return UnimodalHead(_need("audio_dim", audio_dim, "audio"), n_classes, modality="audio", **options)


def _build_multimodal(*, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    return MultimodalHead(
        _need("text_dim", text_dim, "multimodal"), _need("audio_dim", audio_dim, "multimodal"), n_classes, **options
    )


def _build_gated(*, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    return GatedFusion(
        _need("text_dim", text_dim, "gated"), _need("audio_dim", audio_dim, "gated"), n_classes, **options
    )


def _build_late(*, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    text = _sub_head(options.pop("text_head", None), text_dim, n_classes, "text")
    audio = _sub_head(options.pop("audio_head", None), audio_dim, n_classes, "audio")
    return LateFusion(text, audio, **options)


def _build_score(*, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    text = _sub_head(options.pop("text_head", None), text_dim, n_classes, "text")
    audio = _sub_head(options.pop("audio_head", None), audio_dim, n_classes, "audio")
    return ScoreFusion(text, audio, **options)


HEADS: dict[str, Callable[..., nn.Module]] = {
    "text": _build_text,
    "audio": _build_audio,
    "multimodal": _build_multimodal,
    "late": _build_late,
    "score": _build_score,
    "gated": _build_gated,
    "weighted": _build_weighted,
}
"""Head kinds and their builders; each builder takes ``text_dim``, ``audio_dim``, ``n_classes`` and
the kind's keyword options (see :func:`build_head`)."""


def build_head(kind: str, *, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    """Build a freshly initialised head of a registered kind.

    Args:
        kind: one of :data:`HEADS` - ``text``, ``audio`` (unimodal; options ``hidden``, ``dropout``,
            defaulting to the paper's 0 / 0.2), ``multimodal`` and ``gated`` (options of
            :class:`MultimodalHead` / :class:`GatedFusion`), ``late`` and ``score`` (options
            ``text_head`` / ``audio_head``: a trained :class:`UnimodalHead`, its config dict, or
            omitted for a fresh paper head, plus ``text_weight`` / ``scores``), ``weighted`` (option ``head``:
            any head or its config, with ``text_layers`` / ``audio_layers``: layer weights in front of it,
            :class:`~featcache.heads.layers.LayerWeightedHead`).
        text_dim: size of the text vectors (None when the kind does not read text).
        audio_dim: size of the audio vectors (None when the kind does not read audio).
        n_classes: number of classes.
        **options: the kind's keyword options.

    Returns:
        The head, in training mode.

    Raises:
        ValueError: unknown kind, a needed dimension is missing, or an option is invalid.
        TypeError: an unknown option.
    """
    try:
        builder = HEADS[kind]
    except KeyError:
        raise ValueError(f"unknown head kind {kind!r}; choose one of {', '.join(HEADS)}") from None
    return builder(text_dim=text_dim, audio_dim=audio_dim, n_classes=n_classes, **options)


def head_config(head: nn.Module) -> dict[str, Any]:
    """The JSON-able description from which :func:`head_from_config` re-creates ``head``'s architecture.

    Args:
        head: a head built by this module.

    Returns:
        ``{"format", "version", "kind", "text_dim", "audio_dim", "n_classes", "options"}``; fusion of
        unimodal heads nests the two heads' configs in ``options``.

    Raises:
        TypeError: ``head`` is not one of this module's heads.
    """
    if not all(hasattr(head, a) for a in ("kind", "config_dims", "config_options")):
        raise TypeError(f"no config for {type(head).__name__}: not a featcache head")
    cfg: dict[str, Any] = {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, "featcache_version": __version__}
    text_dim, audio_dim = head.config_dims()
    cfg.update(kind=head.kind, n_classes=head.n_classes)
    options = {k: head_config(v) if isinstance(v, nn.Module) else v for k, v in head.config_options().items()}
    cfg.update(text_dim=text_dim, audio_dim=audio_dim, options=options)
    return cfg


def head_from_config(config: dict[str, Any]) -> nn.Module:
    """Re-create a head (fresh weights) from :func:`head_config`'s output.

    Args:
        config: the dict, e.g. read back from ``config.json``.

    Returns:
        The head, in training mode.

    Raises:
        ValueError: the dict is not a head config or names an unknown kind or invalid option.
    """
    if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
        raise ValueError("not a featcache head config (missing 'format': 'featcache-head')")
    if config.get("version") != CONFIG_VERSION:
        raise ValueError(f"unsupported head config version {config.get('version')!r} (expected {CONFIG_VERSION})")
    options = dict(config.get("options") or {})
    if "hidden" in options:
        options["hidden"] = tuple(options["hidden"])
    try:
        return build_head(
            config["kind"],
            text_dim=config.get("text_dim"),
            audio_dim=config.get("audio_dim"),
            n_classes=config["n_classes"],
            **options,
        )
    except KeyError as exc:
        raise ValueError(f"head config lacks {exc.args[0]!r}") from None
    except TypeError as exc:
        raise ValueError(f"invalid head config: {exc}") from None
