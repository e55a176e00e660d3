"""An ablation's options (:class:`AblationSpec`): checked, named by their digest, described, and
written back as the ``featcache ablate`` flags that give them."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from featcache import paper
from featcache.cache import digest, slug
from featcache.errors import FeatcacheError
from featcache.paper import TrainSettings

FUSIONS: tuple[str, ...] = tuple(paper.ABLATION_FUSIONS)
"""Fusion kinds: ``concat`` is the paper's multimodal head (bodies concatenated, then FC layers)."""
PREFIX = "ablate:"
"""Prefix of an ablation's model name in a predictions table."""
SPEC_FILE = "ablation.json"
RESULT_FILE = "result.json"
POOLINGS: tuple[str, ...] = paper.TEXT_POOLINGS
"""Text poolings an ablation can read its vectors with (``AblationSpec.pooling``)."""
MIX_RULE = 1
"""Version of the mixing rule (part of every ablation's identity)."""


def _print(message: str, *, err: bool = False) -> None:
    import sys

    print(message, file=sys.stderr if err else sys.stdout)


# ------------------------------------------------------------------------------------------------
# the options
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AblationSpec:
    """What an ablation changes in the paper's head (every default is the paper's multimodal head).

    Attributes:
        fusion: ``concat`` (the paper's feature-level head), ``late``, ``score`` or ``gated``.
        modalities: The inputs it reads: ``("text", "audio")``, ``("text",)`` or ``("audio",)``.
        hidden: Layer sizes of each modality's body.
        fusion_hidden: Size of the layer after the fusion (``concat`` and ``gated``).
        dropout: Body dropout of both modalities; ``None`` keeps the paper's (text 0, audio 0.2).
        modality_dropout: Probability of zeroing one modality of a training example (``concat``, ``gated``).
        lr: AdamW learning rate; ``None`` takes the study's head settings.
        epochs: Most epochs; ``None`` takes the study's head settings.
        train_on: Attacks whose stored training vectors are mixed into the training set (kept sorted).
        mix: Probability that a training utterance's vector of a modality is replaced by an attacked one.
        pooling: Text pooling (``cls`` or ``mean``) of the vectors the ablation trains and is evaluated on,
            where it differs from the study's; the paper's heads keep the study's (pooling as an ablation axis;
            frozen backbones only: a fine-tuned run's pooling is part of its training).
        label: A readable label, the first part of the name (default: the fusion, or the one modality; with
            a layer, ``-layerK`` after it).
        layer: The hidden state of the study's layer-wise vectors (``--layers``) it reads, where the heads of
            a layer sweep differ (``featcache ablate --layers``); None: the study's own.
    """

    fusion: str = "concat"
    modalities: tuple[str, ...] = paper.MODALITIES
    hidden: tuple[int, ...] = paper.HIDDEN
    fusion_hidden: int = paper.FUSION_HIDDEN
    dropout: float | None = None
    modality_dropout: float = 0.0
    lr: float | None = None
    epochs: int | None = None
    train_on: tuple[str, ...] = ()
    mix: float = 0.5
    pooling: str | None = None
    label: str | None = None
    layer: int | None = None

    def checked(self) -> AblationSpec:
        """The options validated and in canonical form (variant specs canonical, modalities in order,
        ``train_on`` empty when ``mix`` is 0 and ``mix`` 0 when ``train_on`` is empty).

        Returns:
            The canonical spec.

        Raises:
            FeatcacheError: An invalid option (one line naming it and the valid values).
        """
        from featcache.perturb import get_variant

        if self.fusion not in FUSIONS:
            raise FeatcacheError(f"fusion (--fusion {self.fusion!r}): choose one of {', '.join(FUSIONS)}")
        mods = tuple(m for m in paper.MODALITIES if m in self.modalities)
        unknown = [m for m in self.modalities if m not in paper.MODALITIES]
        if unknown or not mods:
            raise FeatcacheError(f"modalities (--modalities {','.join(self.modalities) or '(none)'}): choose text, audio or both")
        if len(mods) == 1 and self.fusion != "concat":
            raise FeatcacheError(f"--fusion {self.fusion} needs both modalities; a one-modality ablation has no fusion")
        hidden = tuple(self.hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise FeatcacheError(f"hidden (--hidden {hidden!r}): give positive layer sizes, e.g. 512,256")
        if isinstance(self.fusion_hidden, bool) or not isinstance(self.fusion_hidden, int) or self.fusion_hidden < 1:
            raise FeatcacheError(f"fusion_hidden (--fusion-hidden {self.fusion_hidden!r}): give a positive layer size, e.g. 128")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise FeatcacheError(f"dropout (--dropout {self.dropout}): give a probability in [0, 1)")
        if not 0 <= self.modality_dropout <= 1:
            raise FeatcacheError(f"modality_dropout (--modality-dropout {self.modality_dropout}): give a probability in [0, 1]")
        if self.modality_dropout > 0 and (len(mods) < 2 or self.fusion not in ("concat", "gated")):
            raise FeatcacheError("--modality-dropout needs a head trained on both modalities at once "
                                 "(--fusion concat or gated)")
        if self.lr is not None and not self.lr > 0:
            raise FeatcacheError(f"lr (--lr {self.lr}): give a positive learning rate, e.g. 0.001")
        if self.epochs is not None and self.epochs < 1:
            raise FeatcacheError(f"epochs (--epochs {self.epochs}): give at least 1")
        if not 0 <= self.mix <= 1:
            raise FeatcacheError(f"mix (--mix {self.mix}): give a probability in [0, 1]")
        train_on: list[str] = []
        for v in self.train_on:
            variant = get_variant(v)
            if variant.modality is None:
                raise FeatcacheError(f"train_on (--train-on {v}): not an attack; name attacks such as adj or pitch")
            if variant.modality not in mods:
                raise FeatcacheError(f"train_on (--train-on {v}): it attacks the {variant.modality}, but the ablation reads only "
                                     f"{' and '.join(mods)}")
            if variant.spec not in train_on:
                train_on.append(variant.spec)
        train_on.sort()  # one name for one set: the order given does not matter
        mix = float(self.mix) if train_on else 0.0
        if mix == 0:
            train_on = []
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise FeatcacheError(f"text_pooling (--text-pooling {self.pooling!r}): choose one of {', '.join(POOLINGS)}")
        if self.pooling is not None and paper.TEXT not in mods:
            raise FeatcacheError("--text-pooling needs an ablation that reads the text")
        layer = self.layer
        if layer is not None and (isinstance(layer, bool) or not str(layer).isdigit()):
            raise FeatcacheError(f"layer ({layer!r}): give a hidden-state number (0 = the embeddings' output)")
        layer = None if layer is None else int(layer)
        label = slug(self.label) if self.label else (self.fusion if len(mods) == 2 else mods[0])
        if not self.label and layer is not None:
            label = f"{label}-layer{layer}"
        return AblationSpec(fusion=self.fusion, modalities=mods, hidden=hidden, fusion_hidden=self.fusion_hidden,
                            dropout=None if self.dropout is None else float(self.dropout),
                            modality_dropout=float(self.modality_dropout), lr=self.lr, epochs=self.epochs,
                            train_on=tuple(train_on), mix=mix, pooling=self.pooling, label=label, layer=layer)

    def dropouts(self) -> dict[str, float]:
        """Body dropout per modality (the paper's when :attr:`dropout` is ``None``)."""
        if self.dropout is not None:
            return {paper.TEXT: self.dropout, paper.AUDIO: self.dropout}
        return {paper.TEXT: paper.TEXT_DROPOUT, paper.AUDIO: paper.AUDIO_DROPOUT}

    def settings(self, base: TrainSettings) -> TrainSettings:
        """The training settings: the study's head settings with this spec's learning rate and epochs."""
        from dataclasses import replace

        return replace(base, lr=base.lr if self.lr is None else self.lr,
                       max_epochs=base.max_epochs if self.epochs is None else self.epochs)

    def identity(self, base: TrainSettings) -> dict[str, Any]:
        """Everything that changes the trained heads, resolved against the study's head settings
        (the label is not part of it)."""
        two = len(self.modalities) == 2
        st = self.settings(base)
        return {
            "fusion": self.fusion if two else None,
            "modalities": list(self.modalities),
            "hidden": list(self.hidden),
            "fusion_hidden": self.fusion_hidden if two and self.fusion in ("concat", "gated") else None,
            "dropout": {m: d for m, d in self.dropouts().items() if m in self.modalities},
            "modality_dropout": self.modality_dropout,
            "train": asdict(st),
            "train_on": list(self.train_on),
            "mix": self.mix,
            "mix_rule": MIX_RULE if self.train_on else None,
            **({"pooling": self.pooling} if self.pooling is not None else {}),  # absent: the study's pooling
            **({"layer": self.layer} if self.layer is not None else {}),  # absent: the study's layer
        }

    def name(self, base: TrainSettings) -> str:
        """``<label>-<digest of the identity>``: the folder and model name."""
        return f"{self.label or self.checked().label}-{digest(self.identity(base), 8)}"

    def describe(self, base: TrainSettings) -> str:
        """One line that says what the ablation is."""
        st = self.settings(base)
        d = self.dropouts()
        parts = [f"{self.fusion} fusion of text and audio" if len(self.modalities) == 2
                 else f"{self.modalities[0]} only",
                 f"hidden {','.join(map(str, self.hidden))}"]
        if len(self.modalities) == 2 and self.fusion in ("concat", "gated"):
            parts.append(f"fusion layer {self.fusion_hidden}")
        parts.append("dropout " + " / ".join(f"{m} {d[m]:g}" for m in self.modalities))
        if self.modality_dropout:
            parts.append(f"modality dropout {self.modality_dropout:g}")
        parts.append(f"lr {st.lr:g}, at most {st.max_epochs} epochs (patience {st.patience}, batch {st.batch_size})")
        parts.append(f"trained on {', '.join(self.train_on)} with mix {self.mix:g}" if self.train_on
                     else "trained on clean vectors")
        if self.pooling is not None:
            parts.append(f"text vectors pooled by {self.pooling}")
        if self.layer is not None:
            parts.append(f"hidden state {self.layer}")
        return "; ".join(parts)

    def cli_flags(self) -> list[str]:
        """The ``featcache ablate`` options that give this spec (the defaults left out; numbers exact; the
        layer is a study option, ``--layer``, see :meth:`featcache.ablate.Ablation.command`)."""
        d = AblationSpec()
        flags: list[str] = []
        default_label = self.fusion if len(self.modalities) == 2 else self.modalities[0]
        if self.layer is not None:
            default_label += f"-layer{self.layer}"
        if self.label and self.label != default_label:
            flags += ["--name", self.label]
        if self.fusion != d.fusion:
            flags += ["--fusion", self.fusion]
        if self.modalities != d.modalities:
            flags += ["--modalities", self.modalities[0]]
        if self.hidden != d.hidden:
            flags += ["--hidden", ",".join(map(str, self.hidden))]
        if self.fusion_hidden != d.fusion_hidden:
            flags += ["--fusion-hidden", str(self.fusion_hidden)]
        if self.dropout is not None:
            flags += ["--dropout", repr(self.dropout)]
        if self.modality_dropout:
            flags += ["--modality-dropout", repr(self.modality_dropout)]
        if self.lr is not None:
            flags += ["--lr", repr(float(self.lr))]
        if self.epochs is not None:
            flags += ["--epochs", str(self.epochs)]
        if self.train_on:
            flags += ["--train-on", ",".join(self.train_on), "--mix", repr(self.mix)]
        if self.pooling is not None:
            flags += ["--text-pooling", self.pooling]
        return flags

    def to_json(self) -> dict[str, Any]:
        """The options as JSON-able values."""
        out = asdict(self)
        out["modalities"], out["hidden"], out["train_on"] = list(self.modalities), list(self.hidden), list(self.train_on)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AblationSpec:
        """The spec written by :meth:`to_json`.

        Raises:
            FeatcacheError: Unknown or invalid options.
        """
        try:
            kw = dict(data)
            for k in ("modalities", "hidden", "train_on"):
                if k in kw:
                    kw[k] = tuple(kw[k])
            return cls(**kw).checked()
        except TypeError as e:
            raise FeatcacheError(f"ablation options {data!r} are not valid: {e}") from None


_LIST_SPLIT = re.compile(r",(?=\s*[A-Za-z][\w.+-]*\s*(?::|,|$))")


def parse_variant_list(text: str) -> tuple[str, ...]:
    """``adj,pitch`` -> ``("adj", "pitch")``; a comma inside a variant's parameters does not split
    (``noise:snr_db=10,seed=1,pitch`` -> ``("noise:snr_db=10,seed=1", "pitch")``).

    Args:
        text: Variant specs separated by commas.

    Returns:
        The specs, stripped, empty ones left out.
    """
    return tuple(p.strip() for p in _LIST_SPLIT.split(text or "") if p.strip())
