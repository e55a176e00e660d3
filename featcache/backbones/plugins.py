"""Encoders from other packages: the ``featcache.encoders`` entry-point group, named ``plugin:NAME``.

A package adds an encoder that is not a transformers checkpoint (emotion2vec through FunASR, a
signal-processing baseline, ...) without forking featcache by declaring an entry point::

    # the plugin's pyproject.toml
    [project.entry-points."featcache.encoders"]
    emotion2vec = "my_package.encoders:Emotion2Vec"

and is then a backbone like any other: ``--audio-backbone plugin:emotion2vec``. The entry point names a
class or a factory, called with no arguments, whose result follows :class:`EncoderPlugin`;
:class:`PluginEncoder` wraps it so extraction runs it as it runs the built-in encoders (``prepare`` in the
DataLoader workers, ``collate`` and ``encode`` in the main process, batches moved to the device).

What names an entry: the plugin's entry-point name, its distribution's name and version, its modality, its
dimension and what its :meth:`EncoderPlugin.identity` returns are all part of the entry's key (the
``plugin`` field of its identity, and their digest stands for the weights digest), so another version of a
plugin, or other settings it reports, never share entries with this one. featcache's own encoder options
(pooling, length limits) do not reach a plugin and are left out of its keys.

Plugin encoders are frozen: fine-tuning needs a transformers checkpoint. ``--layers`` works only with a
plugin that declares ``n_hidden_states``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from featcache.backbones.resolve import PLUGIN_PREFIX, ResolvedBackbone
from featcache.errors import FeatcacheError

__all__ = ["ENCODER_GROUP", "PREFIX", "EncoderPlugin", "PluginEncoder", "installed_encoders", "is_plugin",
           "load_plugin", "resolve_plugin"]

#: The entry-point group encoders are declared in.
ENCODER_GROUP = "featcache.encoders"
#: How a backbone name says it is a plugin (``plugin:emotion2vec``); hub names cannot hold ``:``.
PREFIX = PLUGIN_PREFIX
#: Item keys featcache writes itself next to what ``prepare`` returned (``L`` is read, then dropped).
_RESERVED = ("L", "digest", "id", "label", "record")

_LOADED: dict[tuple[str, str, str, str], Any] = {}


@runtime_checkable
class EncoderPlugin(Protocol):
    """What an encoder plugin provides (duck-typed: no base class to import).

    A plugin holding torch weights should be an :class:`torch.nn.Module`: featcache moves it to the
    extraction device and sets eval mode. Building one must be cheap (featcache builds it to read its
    identity when it plans an entry, before deciding to encode anything): load heavy weights on the first
    :meth:`encode`.

    Optional attributes: ``mask_token`` (text: what masking attacks insert; without one, masking
    attacks fail with one line and the other text attacks run), ``n_hidden_states`` (with it, ``--layers``
    picks hidden states: :meth:`encode` is then called with ``layers=``).

    Attributes:
        modality: ``"text"`` (inputs are strings) or ``"audio"`` (16 kHz float32 mono numpy waveforms).
        dim: The size of one vector.
    """

    modality: str
    dim: int

    def identity(self) -> dict[str, Any]:
        """Everything that changes the vectors: name, version, checkpoint digest, settings.

        Returns:
            A JSON-serialisable dict; part of every entry's key and provenance.
        """

    def prepare(self, x: Any) -> dict[str, Any]:
        """One input made ready for the model, in a DataLoader worker (no model needed there).

        Args:
            x: The utterance's text (``str``) or waveform (``np.ndarray``, float32, 16 kHz), perturbed
                already when a variant is extracted.

        Returns:
            Picklable values, numpy arrays preferred (equal items are encoded once). An optional int
            ``L`` is a bucket: items of equal ``L`` are batched together (without it, any items may
            be). Keys ``digest``, ``id``, ``label`` and ``record`` are featcache's.
        """

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Items :meth:`prepare` returned, stacked into one batch (main process).

        Args:
            items: The prepared items (their ``L`` dropped).

        Returns:
            Keyword arguments of :meth:`encode`, as CPU tensors (featcache moves them to the device).
        """

    def encode(self, **batch: torch.Tensor) -> torch.Tensor:
        """The batch's vectors.

        Args:
            **batch: What :meth:`collate` returned, on the extraction device; and ``layers`` (a tuple of
                hidden-state indices) when the plugin declares ``n_hidden_states`` and ``--layers`` is set.

        Returns:
            ``[batch, dim]``, or ``[batch, len(layers), dim]`` with ``layers``; any float dtype.
        """


def is_plugin(name: str) -> bool:
    """Whether a backbone name names a plugin encoder (``plugin:NAME``)."""
    return name.startswith(PREFIX)


def installed_encoders() -> dict[str, list[Any]]:
    """The encoder plugins installed in this environment.

    Returns:
        Entry-point name -> its entry points (more than one when two distributions declare the name).
    """
    from importlib.metadata import entry_points

    out: dict[str, list[Any]] = {}
    for ep in entry_points(group=ENCODER_GROUP):
        out.setdefault(ep.name, []).append(ep)
    return out


def load_plugin(name: str) -> tuple[Any, dict[str, Any]]:
    """Build the plugin a backbone name names (once per process and plugin version).

    Args:
        name: ``plugin:NAME``.

    Returns:
        ``(plugin, source)``: the plugin, and its entry point, distribution and version.

    Raises:
        FeatcacheError: No such plugin (the message lists the installed ones), two distributions declare
            it, it cannot be loaded, or it lacks part of :class:`EncoderPlugin`.
    """
    short = name[len(PREFIX):]
    installed = installed_encoders()
    if short not in installed:
        have = ", ".join(PREFIX + n for n in sorted(installed)) or "none"
        raise FeatcacheError(f"backbone {name!r}: no encoder plugin {short!r} is installed (entry-point group "
                             f"{ENCODER_GROUP}); installed: {have}")
    eps = installed[short]
    dists = [_dist(ep) for ep in eps]
    if len(eps) > 1:
        raise FeatcacheError(f"backbone {name!r}: declared by {len(eps)} distributions "
                             f"({', '.join(d[0] for d in dists)}); uninstall all but one")
    ep, (dist, version) = eps[0], dists[0]
    source = {"entry_point": short, "object": ep.value, "distribution": dist, "version": version}
    memo = (short, ep.value, dist, version)
    if memo not in _LOADED:
        try:
            plugin = ep.load()()
        except FeatcacheError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever the plugin raises: one line naming it
            first = (str(e).splitlines() or [""])[0][:160]
            raise FeatcacheError(f"backbone {name!r}: cannot load {ep.value} from {dist} {version} "
                                 f"({type(e).__name__}: {first})") from None
        _check(plugin, name=name)
        _LOADED[memo] = plugin
    return _LOADED[memo], source


def _dist(ep: Any) -> tuple[str, str]:
    d = getattr(ep, "dist", None)
    return (d.name, d.version) if d is not None else ("unknown", "unknown")


def _check(plugin: Any, *, name: str) -> None:
    """One line naming what a plugin lacks of :class:`EncoderPlugin`."""
    missing = [a for a in ("modality", "dim", "identity", "prepare", "collate", "encode") if not hasattr(plugin, a)]
    if missing:
        raise FeatcacheError(f"backbone {name!r}: the plugin lacks {', '.join(missing)} (see "
                             "featcache.backbones.plugins.EncoderPlugin)")
    if plugin.modality not in ("text", "audio"):
        raise FeatcacheError(f"backbone {name!r}: the plugin's modality is {plugin.modality!r}; use text or audio")
    if isinstance(plugin.dim, bool) or not isinstance(plugin.dim, int) or plugin.dim < 1:
        raise FeatcacheError(f"backbone {name!r}: the plugin's dim is {plugin.dim!r}; give a positive int")


def resolve_plugin(name: str) -> ResolvedBackbone:
    """A plugin encoder as a resolved backbone: its identity stands where a checkpoint's would.

    Args:
        name: ``plugin:NAME``.

    Returns:
        The backbone: ``model_type`` ``plugin``, ``plugin`` the identity every entry's key holds,
        ``weights_hash`` its digest, ``path`` the file of the plugin's module.

    Raises:
        FeatcacheError: As :func:`load_plugin`, or an identity that is not a JSON object.
    """
    plugin, source = load_plugin(name)
    own = plugin.identity()
    try:
        text = json.dumps(own, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise FeatcacheError(f"backbone {name!r}: the plugin's identity() is not JSON ({e})") from None
    if not isinstance(own, dict):
        raise FeatcacheError(f"backbone {name!r}: the plugin's identity() returned {type(own).__name__}, not a dict")
    ident = {**source, "modality": plugin.modality, "dim": int(plugin.dim), "identity": json.loads(text)}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    module = sys.modules.get(type(plugin).__module__)
    path = Path(getattr(module, "__file__", None) or ".").resolve()
    return ResolvedBackbone(name=name, path=path, model_type="plugin", weights_hash=digest, plugin=ident)


class PluginEncoder(nn.Module):
    """A plugin wrapped as featcache's encoders are: ``prepare``, ``collate``, ``forward``, ``hidden_size``.

    Args:
        plugin: The plugin (:class:`EncoderPlugin`).
        name: Its backbone name, for messages.
    """

    def __init__(self, plugin: Any, *, name: str) -> None:
        super().__init__()
        self.plugin = plugin  # (a submodule when it is an nn.Module: moved and set to eval with this one)
        self.name = name
        self.modality = str(plugin.modality)
        self.layers: tuple[int, ...] | None = None
        """Hidden states to pool (only for a plugin that declares ``n_hidden_states``), or None."""

    @property
    def hidden_size(self) -> int:
        return int(self.plugin.dim)

    @property
    def n_hidden_states(self) -> int:
        """The plugin's ``n_hidden_states``.

        Raises:
            FeatcacheError: The plugin declares none (it gives its last vector only).
        """
        n = getattr(self.plugin, "n_hidden_states", None)
        if n is None:
            raise FeatcacheError(f"layers (--layers): backbone {self.name!r} gives one vector per utterance "
                                 "(the plugin declares no n_hidden_states); extract without --layers")
        return int(n)

    @property
    def mask_token(self) -> str | None:
        """The plugin's mask token, or None (masking attacks then fail with one line)."""
        tok = getattr(self.plugin, "mask_token", None)
        return None if tok is None else str(tok)

    def prepare(self, x: Any) -> dict[str, Any]:
        """The plugin's ``prepare`` (worker side), with a bucket ``L`` of 0 when it gives none.

        Raises:
            FeatcacheError: It returned no dict, or wrote a key featcache writes.
        """
        item = self.plugin.prepare(x)
        if not isinstance(item, dict):
            raise FeatcacheError(f"backbone {self.name!r}: the plugin's prepare returned {type(item).__name__}, "
                                 "not a dict")
        taken = sorted(k for k in item if k in _RESERVED[1:])
        if taken:
            raise FeatcacheError(f"backbone {self.name!r}: the plugin's prepare wrote {', '.join(taken)}; "
                                 "those keys are featcache's")
        return {**item, "L": int(item.get("L", 0))}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The plugin's ``collate`` over the items, without the keys featcache added."""
        return self.plugin.collate([{k: v for k, v in it.items() if k not in _RESERVED} for it in items])

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        """The plugin's vectors, checked: ``[batch, dim]``, or ``[batch, len(layers), dim]``.

        Raises:
            FeatcacheError: Another shape.
        """
        if self.layers is not None:
            batch = {**batch, "layers": self.layers}  # type: ignore[dict-item]
        out = torch.as_tensor(self.plugin.encode(**batch))
        sizes = [v.shape[0] for v in batch.values() if isinstance(v, torch.Tensor) and v.ndim]
        n = sizes[0] if sizes else (out.shape[0] if out.ndim else 0)
        want = (n, self.hidden_size) if self.layers is None else (n, len(self.layers), self.hidden_size)
        if tuple(out.shape) != want:
            raise FeatcacheError(f"backbone {self.name!r}: the plugin's encode returned shape {tuple(out.shape)}, "
                                 f"expected {want}")
        return out
