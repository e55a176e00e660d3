"""A study's options, defined once: :class:`StudyOptions`.

Every option that names a study's vectors, fine-tuning runs or heads is one field here, with its default,
its check, its part in the study's key and its command-line flag (:class:`Flag`). Everything else is built
from these fields: the command line's options (``featcache.cli`` turns each :class:`Flag` into a click
option), :func:`featcache.api.open_study`'s keywords, what the executors ship to a worker, and every
"run this command" hint (:meth:`StudyOptions.to_flags`, read back by :meth:`StudyOptions.from_flags`).

What a field names (``Flag.names``):

``vectors``
    the stored entries a study reads (corpus, backbones, encoder options, variant seed);
``heads``
    the heads trained on cached vectors (their hyperparameters, the dev split they stop on);
``runs``
    the fine-tuning runs a fine-tuned study uses (their hyperparameters and precision); they name the
    study's heads too when its backbones are fine-tuned, and nothing when they are frozen;
``nothing``
    where the study lives or how much of it is run (the store, the seeds): never part of the key.

This module imports neither torch nor click, so the command line builds its options from it at start-up.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from featcache import paper
from featcache.backbones.layers import parse_layers
from featcache.cache.writers import STORE_DTYPES
from featcache.errors import FeatcacheError
from featcache.paper import DEV_MODES, HEAD_SETTINGS, TEXT_POOLINGS

__all__ = ["COMMAND_FIELDS", "COMMAND_FLAGS", "COMPUTE_PRECISIONS", "CORPUS_FIELDS", "Flag", "StudyOptions", "option_fields",
           "parse_labels", "parse_merge_text"]

POOLINGS: tuple[str, ...] = ("auto", *TEXT_POOLINGS)
WHISPER_INPUTS: tuple[str, ...] = ("trim", "30s")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
COMPUTE_PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
"""The arithmetic of extraction and of the heads trained on cached vectors (``--precision``): float32, or
bfloat16 matrix products with float32 master weights and optimiser state
(:func:`featcache.train.compute_dtype`)."""
PRESET_NAMES: tuple[str, ...] = ("demo", "paper")
"""The presets (:data:`featcache.presets.PRESETS` holds them; a test keeps the two in step)."""


@dataclass(frozen=True)
class Flag:
    """How one :class:`StudyOptions` field appears on the command line and in the key.

    Attributes:
        name: The flag (``--head-lr``).
        help: Its help text.
        kind: How its text reads: ``text``, ``int``, ``float``, ``choice``, ``bool`` (a pair of flags),
            ``names`` (``A,B,...``), ``seeds`` (``S,S,...``), ``merge`` (``SRC=DST,...``) or ``path``.
        names: What a change of it names anew: ``vectors``, ``heads``, ``runs`` or ``nothing`` (see the
            module docstring).
        choices: The allowed values of a ``choice``.
        minimum: The smallest allowed number (``min_open``: excluded).
        min_open: Whether ``minimum`` itself is refused.
        maximum: The largest allowed number (``max_open``: excluded).
        max_open: Whether ``maximum`` itself is refused.
        off: The flag that sets a ``bool`` to False (``--finetuned``).
        metavar: The value's name in ``--help``.
        envvar: An environment variable the command line reads it from.
        default_help: How ``--help`` states a default that is not a plain value (``preset's``).
    """

    name: str
    help: str
    kind: str = "text"
    names: str = "vectors"
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    min_open: bool = False
    maximum: float | None = None
    max_open: bool = False
    off: str | None = None
    metavar: str | None = None
    envvar: str | None = None
    default_help: str | None = None


def _flag(default: Any, **spec: Any) -> Any:
    return field(default=default, metadata={"flag": Flag(**spec)})


def parse_labels(text: str | None) -> tuple[str, ...] | None:
    """``ang,sad`` -> ``("ang", "sad")``; None stays None (the corpus's own labels)."""
    if text is None:
        return None
    return tuple(x.strip() for x in text.split(",") if x.strip())


def parse_merge_text(text: str | None) -> tuple[tuple[str, str], ...] | None:
    """``exc=hap,sur=hap`` -> ``(("exc", "hap"), ("sur", "hap"))``; ``''`` -> no merge; None -> the corpus's.

    Raises:
        FeatcacheError: A part that is not ``SRC=DST``.
    """
    if text is None:
        return None
    from featcache.data import parse_merge

    return tuple(parse_merge(text).items())


def _parse_layer(value: Any, *, layers: str | None) -> str:
    """``--layer``'s value in its one spelling (``weighted`` or a hidden-state number), checked against the
    stored ``layers``.

    Raises:
        FeatcacheError: Not a number nor ``weighted``, no ``--layers``, or a layer they do not store.
    """
    text = str(value).strip()
    if text != "weighted" and not text.isdigit():
        raise FeatcacheError(f"layer (--layer {text!r}): give a hidden-state number (0 = the embeddings' output) "
                             "or weighted")
    text = text if text == "weighted" else str(int(text))
    if layers is None:
        raise FeatcacheError(f"layer (--layer {text}): heads read one layer of layer-wise vectors; store them with "
                             "--layers (e.g. --layers all)")
    if text != "weighted" and layers != "all" and text not in layers.split(","):
        raise FeatcacheError(f"layer (--layer {text}): --layers {layers} does not store it")
    return text


def _parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise FeatcacheError(f"seeds (--seeds {text!r}): write whole numbers separated by commas, e.g. 0,1,2") from None
    if not seeds:
        raise FeatcacheError(f"seeds (--seeds {text!r}): give at least one seed, e.g. 0")
    return seeds


@dataclass(frozen=True)
class StudyOptions:
    """Every option that names a study's vectors, runs and heads (and where it lives).

    ``None`` means "the preset's" (or, for ``labels`` and ``merge``, the corpus reader's own). Values are
    checked when the options are made; sequences are kept as tuples so that equal options compare equal.

    Attributes:
        corpus: ``iemocap:DIR``, ``manifest:FILE.csv|.jsonl`` or ``emobox:DIR[?audio=ROOT]``.
        labels: Labels to keep, in class order.
        merge: Raw labels merged into a class, as ``(source, target)`` pairs.
        text_source: ``gold`` (the corpus's text), or a recogniser whose transcripts are the study's text.
        cache_dir: The feature store.
        preset: ``demo`` or ``paper`` (:mod:`featcache.presets`).
        text_backbone: Text encoder instead of the preset's.
        audio_backbone: Speech encoder instead of the preset's.
        pooling: Text pooling instead of the preset's.
        max_samples: Clip length cut instead of the preset's.
        pad_to: Pad every clip to this many samples.
        whisper_input: Whisper's input length instead of the preset's.
        layers: The hidden states stored per utterance (``all``, ``0,6,12``; None: the last layer only).
        store_dtype: ``float32`` or ``float16``.
        precision: ``fp32`` or ``bf16``: the arithmetic of extraction and of the heads (names both).
        layer: The stored hidden state the heads read (a number, or ``weighted``; None: the last stored).
        frozen: Frozen backbones or per-fold fine-tuned ones (default: the preset's).
        seeds: Seeds of the heads and fine-tuning runs (default: the preset's).
        variant_seed: Seed of the perturbations.
        dev: How the early-stopping dev set is taken from the training sessions.
        dev_fraction: Share of the training utterances in a stratified dev set.
        head_batch_size: Batch size of the heads trained on cached vectors.
        head_lr: Their AdamW learning rate.
        head_epochs: Their most epochs.
        head_patience: Their early-stopping patience.
        finetune_batch_size: Batch size of the fine-tuning runs (default: the preset's, per model).
        finetune_lr: Their learning rate (default: the preset's, per model).
        finetune_epochs: Their most epochs (default: the preset's).
        finetune_patience: Their early-stopping patience (default: the preset's).
        grad_accum: Their batches per optimiser step (default: the preset's, 1).
        finetune_precision: Their arithmetic (``auto``: see :func:`featcache.train.resolve_precision`).
    """

    corpus: str = _flag("", name="--corpus", metavar="SPEC", envvar="FEATCACHE_CORPUS",
                        help="iemocap:DIR (release layout, also the demo corpus), manifest:FILE.csv|.jsonl or "
                             "emobox:DIR[?audio=ROOT] (an EmoBox dataset folder, its folds as published).")
    labels: tuple[str, ...] | None = _flag(None, name="--labels", kind="names", metavar="A,B,...",
                                           help="Labels to keep, in class order (IEMOCAP default: ang,sad,hap,fru; "
                                                "manifest, EmoBox: all).")
    merge: tuple[tuple[str, str], ...] | None = _flag(None, name="--merge", kind="merge", metavar="SRC=DST,...",
                                                      help="Merge raw labels (IEMOCAP default: exc=hap; pass '' for "
                                                           "none).")
    text_source: str = _flag("gold", name="--text-source", metavar="gold|whisper-base|DIR",
                             help="The text the study reads: the corpus's own (gold), or a speech recogniser's "
                                  "transcripts of its audio (the packaged whisper-base or a CTranslate2 Whisper "
                                  "folder; transcribed once into the store), for training and every condition.")
    cache_dir: str = _flag("./cache", name="--cache-dir", kind="path", names="nothing", envvar="FEATCACHE_CACHE",
                           help="Feature store directory.")
    preset: str = _flag("demo", name="--preset", kind="choice", choices=PRESET_NAMES,
                        help="Backbones and hyperparameters (see `featcache presets`).")
    text_backbone: str | None = _flag(None, name="--text-backbone", metavar="NAME", default_help="preset's",
                                      help="Text encoder: alias (minilm), directory or hub name.")
    audio_backbone: str | None = _flag(None, name="--audio-backbone", metavar="NAME", default_help="preset's",
                                       help="Speech encoder: alias (whisper-base), directory or hub name.")
    pooling: str | None = _flag(None, name="--pooling", kind="choice", choices=POOLINGS,
                                default_help="preset's: demo auto (MiniLM: mean), paper cls",
                                help="Text pooling: the [CLS] vector, the mean over tokens, or auto = the backbone's "
                                     "own (a sentence-embedding model's pooling config, else cls).")
    max_samples: int | None = _flag(None, name="--max-samples", kind="int", minimum=1,
                                    default_help="preset's, 246000 = 15.375 s", help="Cut longer clips here.")
    pad_to: int | None = _flag(None, name="--pad-to", kind="int", minimum=1,
                               help="Pad every clip to this many samples and pool all frames (246000 = the paper).")
    whisper_input: str | None = _flag(None, name="--whisper-input", kind="choice", choices=WHISPER_INPUTS,
                                      default_help="preset's",
                                      help="Whisper encoder input: 30 s windows (as trained) or trimmed to the clip "
                                           "(much faster).")
    layers: str | None = _flag(None, name="--layers", metavar="all|K,K,...|A-B", default_help="the last layer only",
                               help="Store the pooled vector of these hidden states of the backbone (0 = the "
                                    "embeddings' output; all = every one), each pooled like the last layer's.")
    store_dtype: str = _flag("float32", name="--store-dtype", kind="choice", choices=STORE_DTYPES,
                             help="How vectors are stored: float16 halves the bytes (heads read float32 either way).")
    precision: str = _flag("fp32", name="--precision", kind="choice", choices=COMPUTE_PRECISIONS,
                           help="Arithmetic of extraction and of the heads (training, ablations, evaluation): fp32, "
                                "or bf16 = bfloat16 matrix products (float32 master weights and optimiser state), "
                                "faster on CPUs with AVX512-BF16/AMX and on GPUs; bf16 vectors and heads are stored "
                                "apart from fp32 ones.")
    layer: str | None = _flag(None, name="--layer", metavar="K|weighted", names="heads",
                              default_help="the last stored layer",
                              help="The hidden state heads read from layer-wise vectors (--layers): K, or weighted = "
                                   "softmax weights over every stored layer, learned with each head (SUPERB's "
                                   "featurizer).")
    frozen: bool | None = _flag(None, name="--frozen", off="--finetuned", kind="bool", default_help="preset's",
                                help="Frozen backbones (entries shared by folds) or per-fold fine-tuned ones.")
    seeds: tuple[int, ...] | None = _flag(None, name="--seeds", kind="seeds", names="nothing", metavar="S,S,...",
                                          default_help="preset's, 0,1,2",
                                          help="Seeds of the heads / fine-tuning runs.")
    variant_seed: int = _flag(0, name="--variant-seed", kind="int", minimum=0,
                              help="Seed of the perturbations (as given to extract --seed).")
    dev: str = _flag("stratified", name="--dev", kind="choice", choices=DEV_MODES, names="heads",
                     help="How the early-stopping dev set is taken from the training sessions.")
    dev_fraction: float = _flag(paper.DEV_FRACTION, name="--dev-fraction", kind="float", names="heads", minimum=0,
                                min_open=True, maximum=1, max_open=True,
                                help="Share of training utterances in a stratified dev set.")
    head_batch_size: int = _flag(HEAD_SETTINGS.batch_size, name="--head-batch-size", kind="int", minimum=1,
                                 names="heads",
                                 help="Batch size of the heads trained on cached vectors (other settings train "
                                      "other heads; pass the same ones to evaluate).")
    head_lr: float = _flag(HEAD_SETTINGS.lr, name="--head-lr", kind="float", minimum=0, min_open=True, names="heads",
                           help="AdamW learning rate of the heads trained on cached vectors.")
    head_epochs: int = _flag(HEAD_SETTINGS.max_epochs, name="--head-epochs", kind="int", minimum=1, names="heads",
                             help="Most epochs of the heads trained on cached vectors.")
    head_patience: int = _flag(HEAD_SETTINGS.patience, name="--head-patience", kind="int", minimum=1, names="heads",
                               help="Early-stopping patience (epochs) of the heads trained on cached vectors.")
    finetune_batch_size: int | None = _flag(None, name="--finetune-batch-size", kind="int", minimum=1, names="runs",
                                            default_help="preset's: paper 16 text, 8 audio, 4 multimodal",
                                            help="Batch size of the fine-tuning runs.")
    finetune_lr: float | None = _flag(None, name="--finetune-lr", kind="float", minimum=0, min_open=True,
                                      names="runs", default_help="preset's: paper 1e-6 text/audio, 5e-6 multimodal",
                                      help="Learning rate of the fine-tuning runs.")
    finetune_epochs: int | None = _flag(None, name="--finetune-epochs", kind="int", minimum=1, names="runs",
                                        default_help="preset's", help="Most epochs of the fine-tuning runs.")
    finetune_patience: int | None = _flag(None, name="--finetune-patience", kind="int", minimum=1, names="runs",
                                          default_help="preset's, 10",
                                          help="Early-stopping patience on dev accuracy of the fine-tuning runs.")
    grad_accum: int | None = _flag(None, name="--grad-accum", kind="int", minimum=1, names="runs",
                                   default_help="preset's, 1",
                                   help="Batches per optimiser step of the fine-tuning runs (for small memory).")
    finetune_precision: str = _flag("auto", name="--finetune-precision", kind="choice", choices=PRECISIONS,
                                    names="runs",
                                    help="Arithmetic of the fine-tuning runs: fp32, or bf16/fp16 autocast on CUDA; "
                                         "auto: bf16 on CUDA for backbones of 768 dims or more (BERT-base, "
                                         "wav2vec2-base), else fp32.")

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.labels is not None:
            set_(self, "labels", tuple(self.labels))
        if self.merge is not None:
            items = self.merge.items() if isinstance(self.merge, Mapping) else self.merge
            set_(self, "merge", tuple((str(k), str(v)) for k, v in items))
        if self.seeds is not None:
            set_(self, "seeds", tuple(int(s) for s in self.seeds))
        set_(self, "cache_dir", str(Path(self.cache_dir)))
        set_(self, "layers", parse_layers(self.layers))
        if self.layer is not None:
            set_(self, "layer", _parse_layer(self.layer, layers=self.layers))
        for f in fields(self):
            _check(f.name, getattr(self, f.name), f.metadata["flag"])
        if self.seeds is not None:
            if not self.seeds:
                raise FeatcacheError("seeds (--seeds): give at least one seed, e.g. 0")
            if len(set(self.seeds)) != len(self.seeds):
                raise FeatcacheError(f"seeds (--seeds {','.join(map(str, self.seeds))}): each seed once")

    # -- flags ----------------------------------------------------------------------------------------

    def to_flags(self, *, command: str | None = None, always: Sequence[str] = ("corpus", "cache_dir", "preset")
                 ) -> list[str]:
        """The command-line flags that give these options: the fields in ``always``, then every field that
        differs from its default, in field order.

        Args:
            command: A command whose flags differ (``extract``, ``finetune``; see :data:`COMMAND_FLAGS`);
                only the fields it takes are given. None: the study commands (``train-heads``,
                ``evaluate``, ``ablate``, ``run``), which take every field.
            always: Fields given even at their default.

        Returns:
            The flags and their values, ready for :func:`shlex.join`.
        """
        names = COMMAND_FLAGS.get(command or "", {})
        out: list[str] = []
        for f in option_fields(command):
            value, flag = getattr(self, f.name), f.metadata["flag"]
            if value == f.default and f.name not in always:
                continue
            name = names.get(f.name, flag.name)
            if flag.kind == "bool":
                if value is not None:
                    out.append(name if value else str(flag.off))
                continue
            out += [name, format_value(f.name, value)]
        return out

    @classmethod
    def from_flags(cls, flags: Sequence[str], *, command: str | None = None) -> StudyOptions:
        """The options that :meth:`to_flags` wrote (``from_flags(o.to_flags()) == o``).

        Raises:
            FeatcacheError: A flag that is not a study option of ``command``, or a value that does not parse.
        """
        names = COMMAND_FLAGS.get(command or "", {})
        by_flag: dict[str, tuple[str, Any]] = {}
        for f in option_fields(command):
            flag = f.metadata["flag"]
            by_flag[names.get(f.name, flag.name)] = (f.name, True)
            if flag.off:
                by_flag[flag.off] = (f.name, False)
        given: dict[str, Any] = {}
        items = list(flags)
        i = 0
        while i < len(items):
            if items[i] not in by_flag:
                raise FeatcacheError(f"{items[i]!r} is not a study option")
            name, on = by_flag[items[i]]
            kind = _field(name).metadata["flag"].kind
            if kind == "bool":
                given[name], i = on, i + 1
                continue
            if i + 1 >= len(items):
                raise FeatcacheError(f"{items[i]}: no value given")
            given[name], i = parse_value(name, items[i + 1]), i + 2
        return cls(**given)

    @classmethod
    def from_text(cls, **values: Any) -> StudyOptions:
        """The options from values as the command line gives them (``labels``, ``merge`` and ``seeds`` as
        text, None for an option not given).

        Raises:
            FeatcacheError: A value that does not parse or fails its check.
        """
        kinds = {f.name: f.metadata["flag"].kind for f in fields(cls)}
        given = {}
        for name, value in values.items():
            if name not in kinds:
                raise FeatcacheError(f"{name!r} is not a study option; the options are {', '.join(kinds)}")
            if isinstance(value, str) and kinds[name] in ("names", "merge", "seeds"):
                value = parse_value(name, value)
            if value is None and _default(name) is not None:
                continue  # not given where the command line has no default of its own
            given[name] = value
        return cls(**given)

    def replace(self, **changes: Any) -> StudyOptions:
        """A copy with ``changes`` (checked like the original)."""
        return replace(self, **changes)


@functools.cache
def _fields_by_name() -> dict[str, Any]:
    return {f.name: f for f in fields(StudyOptions)}


def _field(name: str) -> Any:
    """The :class:`StudyOptions` field called ``name``."""
    return _fields_by_name()[name]


def _default(name: str) -> Any:
    return _field(name).default


def option_fields(command: str | None = None) -> list[Any]:
    """The :class:`StudyOptions` fields that ``command`` takes (None: the study commands: all of them)."""
    wanted = COMMAND_FIELDS.get(command or "")
    return [f for f in fields(StudyOptions) if wanted is None or f.name in wanted]


def parse_value(name: str, text: str) -> Any:
    """One field's value from its command-line text.

    Raises:
        FeatcacheError: Text that does not read as the field's kind.
    """
    flag = _field(name).metadata["flag"]
    kind = flag.kind
    if kind == "names":
        return parse_labels(text)
    if kind == "merge":
        return parse_merge_text(text)
    if kind == "seeds":
        return _parse_seeds(text)
    if kind in ("int", "float"):
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            raise FeatcacheError(f"{name} ({flag.name} {text!r}): not a{'n integer' if kind == 'int' else ' number'}"
                                 ) from None
    return text


def format_value(name: str, value: Any) -> str:
    """One field's value as command-line text (:func:`parse_value` reads it back to an equal value)."""
    kind = _field(name).metadata["flag"].kind
    if kind in ("names", "seeds"):
        return ",".join(map(str, value))
    if kind == "merge":
        return ",".join(f"{k}={v}" for k, v in value)
    if kind == "float":
        return repr(float(value)) if float(value) != float(f"{value:g}") else f"{value:g}"
    return str(value)


def _check(name: str, value: Any, flag: Flag) -> None:
    """Check one field's value against its :class:`Flag`.

    Raises:
        FeatcacheError: A value of the wrong kind, an unknown choice or a number out of range.
    """
    if value is None:
        if _default(name) is not None and flag.kind not in ("names", "merge"):
            raise FeatcacheError(f"{name} ({flag.name}): a value is needed")
        return
    if flag.kind == "choice" and value not in flag.choices:
        raise FeatcacheError(f"{name} ({flag.name} {value!r}) is unknown; choose one of {', '.join(flag.choices)}")
    if flag.kind == "bool" and not isinstance(value, bool):
        raise FeatcacheError(f"{name} ({flag.name} {value!r}): give True or False")
    if flag.kind == "names" and (not value or any(not isinstance(x, str) or not x.strip() for x in value)):
        raise FeatcacheError(f"{name} ({flag.name} {value!r}): give at least one non-empty name")
    if flag.kind in ("int", "float"):
        number_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number_ok or (flag.kind == "int" and not float(value).is_integer()) or not math.isfinite(value):
            raise FeatcacheError(f"{name} ({flag.name} {value!r}): not a{'n integer' if flag.kind == 'int' else ' number'}")
        if flag.minimum is not None and (value < flag.minimum or (flag.min_open and value == flag.minimum)):
            raise FeatcacheError(f"{name} ({flag.name} {value!r}): must be {'above' if flag.min_open else 'at least'} "
                                 f"{flag.minimum:g}")
        if flag.maximum is not None and (value > flag.maximum or (flag.max_open and value == flag.maximum)):
            raise FeatcacheError(f"{name} ({flag.name} {value!r}): must be {'below' if flag.max_open else 'at most'} "
                                 f"{flag.maximum:g}")


CORPUS_FIELDS: tuple[str, ...] = ("corpus", "labels", "merge")
"""The fields that read the corpus (commands that take a corpus but no study take these only)."""
ENCODER_FIELDS: tuple[str, ...] = ("preset", "text_backbone", "audio_backbone", "pooling", "max_samples", "pad_to",
                                   "whisper_input")
STORED_FIELDS: tuple[str, ...] = ("layers", "store_dtype", "precision")
"""What extraction stores of each utterance (fine-tuning trains on the last layer, whatever is stored)."""
RUN_FIELDS: tuple[str, ...] = ("dev", "dev_fraction", "finetune_batch_size", "finetune_lr", "finetune_epochs",
                               "finetune_patience", "grad_accum", "finetune_precision")
COMMAND_FIELDS: dict[str, tuple[str, ...]] = {
    "extract": (*CORPUS_FIELDS, "text_source", "cache_dir", *ENCODER_FIELDS, *STORED_FIELDS, "frozen", "variant_seed",
                *RUN_FIELDS),
    "finetune": (*CORPUS_FIELDS, "text_source", "cache_dir", *ENCODER_FIELDS, *RUN_FIELDS),
}
"""The fields of the commands that take only some (the study commands take every field)."""
COMMAND_FLAGS: dict[str, dict[str, str]] = {
    "extract": {"variant_seed": "--seed"},
    "finetune": {"finetune_batch_size": "--batch-size", "finetune_lr": "--lr", "finetune_epochs": "--max-epochs",
                 "finetune_patience": "--patience", "finetune_precision": "--precision"},
}
"""Flags that a command names its own way (``featcache finetune --lr`` is the study's ``--finetune-lr``)."""
