"""Accuracy, impact, flip rates and paired bootstrap intervals over evaluation predictions.

Everything here is a pure function of a :class:`Predictions` table: one row per
(fold, seed, model, condition, utterance) with the true label, the predicted label, the class
probabilities and whether the condition actually changed that utterance's input.

Definitions (Cohen et al. 2023, section 5):

* **Accuracy per session** - the accuracy of a fold on its test session; the paper's **Avg.** is the
  mean of the per-session accuracies (not the pooled accuracy), computed per seed; tables show the mean
  over seeds, and ``+/-`` the sample standard deviation over seeds (``ddof=1``, :data:`STD_DDOF`).
* **Impact** - ``(Avg. under attack - clean Avg.) / clean Avg. x 100`` per seed, then mean and std over
  seeds; negative when the attack hurts. Both averages run over the sessions the two conditions share.
* **Impact S. Modal** - for a fusion model, the impact of the same attack(s) on the unimodal model(s):
  the audio model for the audio part of a condition, the text model for the text part
  (``pitch+adj`` -> audio model under ``pitch``, text model under ``adj``).
* **Flip rate** - share of predictions that differ from the clean prediction of the same
  (fold, seed, model, utterance); pooled over the folds of a seed.
* **Affected subset** - the utterances a condition actually changed (``affected``); its impact compares
  the attacked and the clean accuracy of the same utterances, session-averaged like Avg.
* **UAR** - unweighted average recall (balanced accuracy); **macro-F1** over the classes present.

Accuracies are fractions in ``[0, 1]``; impacts are percentages; flip rates are fractions.

Usage::

    preds = Predictions.load("predictions.h5")
    analysis = Analysis(preds)
    analysis.impact("multimodal", "adj").mean            # -5.20 (percent)
    diff = analysis.impact_difference("multimodal", "adj")
    diff.ci.low, diff.ci.high, diff.ci.excludes_zero     # fusion minus text-model impact

Statistics (:class:`Analysis`):

* :meth:`Analysis.impact_difference` - paired, fold-stratified percentile bootstrap of
  ``impact(fusion) - impact(unimodal)`` for one attack: every resample draws utterances with
  replacement within each fold and applies the same draw to both models, both conditions and every
  seed, then recomputes both impacts exactly as above (scipy's ``bootstrap`` has no strata, hence the
  few lines here).
* :meth:`Analysis.additivity` - ``impact(A+T) - (impact(A) + impact(T))`` for a combined attack, with
  the same bootstrap.

Tidy tables: :meth:`Analysis.results` (one :class:`ResultRow` per fold, seed, model and condition) and
:meth:`Analysis.summary` (one :class:`SummaryRow` per model and condition), written as CSV with
:func:`write_results_csv` / :func:`write_summary_csv`.

Per-group scores are computed from confusion matrices counted for all groups at once (one
``np.bincount``); :func:`classification_scores` gives the same numbers for one group through
scikit-learn, and the tests hold the two to each other.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from featcache import __version__
from featcache.errors import FeatcacheError

CLEAN = "clean"
"""Name of the unperturbed condition: the baseline of every impact."""
TEXT_MODEL = "text"
"""Name of the unimodal text model."""
AUDIO_MODEL = "audio"
"""Name of the unimodal audio model."""
MULTIMODAL_MODEL = "multimodal"
"""Name of the paper's feature-level fusion model."""
STD_DDOF = 1
"""Delta degrees of freedom of every standard deviation over seeds (sample std; NaN for one seed)."""
DEFAULT_RESAMPLES = 1000
"""Default number of bootstrap resamples."""
DEFAULT_CONFIDENCE = 0.95
"""Default confidence level of bootstrap intervals."""

PREDICTIONS_FORMAT = "featcache-predictions"
PREDICTIONS_VERSION = 1

COLUMNS: tuple[str, ...] = (
    "fold", "session", "seed", "model", "condition", "utt_id", "label", "pred", "probs", "affected",
)
"""The parallel columns of :class:`Predictions`, in storage order."""
_INT_COLUMNS = ("fold", "seed", "label", "pred")
_STR_COLUMNS = ("session", "model", "condition", "utt_id")

PAPER_CONDITIONS: tuple[str, ...] = (
    "adj", "random-adj", "noun", "random-noun", "pitch",
    "pitch+adj", "pitch+random-adj", "pitch+noun", "pitch+random-noun",
    "no-text", "no-audio", "noise",
)
"""The attacks of the paper's Tables 4-6, in their order."""


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def natural_key(value: str) -> tuple[Any, ...]:
    """Sort key that orders digit runs numerically (``"2" < "10"``, ``"snr-5" < "snr-10"``).

    Args:
        value: A string.

    Returns:
        A tuple usable as a sort key.
    """
    parts = re.split(r"(\d+(?:\.\d+)?)", value)
    return tuple((0, float(p), p) if i % 2 else (1, 0.0, p) for i, p in enumerate(parts))


@functools.lru_cache(maxsize=4096)
def condition_key(condition: str) -> tuple[str | None, str | None] | None:
    """The canonical ``(audio_spec, text_spec)`` of a condition, or ``None`` if it does not parse.

    ``adj``, ``pos:ADJ`` and ``adj+clean`` share one key; ``pitch+adj`` and ``adj+pitch`` too.

    Args:
        condition: A condition name as found in the predictions.

    Returns:
        The key from :func:`featcache.perturb.parse_condition`, or ``None`` for a name no registered
        variant explains.
    """
    from featcache.perturb import parse_condition

    try:
        return parse_condition(condition)
    except (FeatcacheError, ValueError, KeyError):
        return None


def mean_std(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof`` = :data:`STD_DDOF`) of finite values.

    Args:
        values: Per-seed values; NaNs are ignored.

    Returns:
        ``(mean, std)``; ``std`` is NaN with fewer than two finite values, both NaN with none.
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return math.nan, math.nan
    std = float(np.std(arr, ddof=STD_DDOF)) if arr.size > STD_DDOF else math.nan
    return float(np.mean(arr)), std


def relative_change(attacked: float, clean: float) -> float:
    """Impact in percent: ``(attacked - clean) / clean * 100``.

    Args:
        attacked: Accuracy under attack.
        clean: Clean accuracy.

    Returns:
        The relative change in percent (negative when the attack hurts); NaN when ``clean`` is 0 or NaN.
    """
    if not (clean > 0) or not math.isfinite(attacked):
        return math.nan
    return (attacked - clean) / clean * 100.0


def _encode_utf8(col: np.ndarray) -> np.ndarray:
    """UTF-8 bytes of a str array, encoding each distinct value once."""
    if col.size == 0:
        return np.zeros(0, dtype="S1")
    uniq, inv = np.unique(col, return_inverse=True)
    return np.char.encode(uniq, "utf-8")[inv.reshape(-1)]


def _decode_utf8(data: np.ndarray) -> np.ndarray:
    """str array of UTF-8 bytes, decoding each distinct value once."""
    if data.size == 0:
        return np.zeros(data.shape, dtype="<U1")
    uniq, inv = np.unique(data, return_inverse=True)
    return np.char.decode(uniq, "utf-8")[inv.reshape(-1)].reshape(data.shape)


def _as_str_array(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        return _decode_utf8(arr)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype="<U1")
    if arr.dtype.kind != "U":
        arr = arr.astype(str)
    return arr


# ----------------------------------------------------------------------------------------------
# predictions
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Predictions:
    """Parallel columns of evaluation predictions, one row per (fold, seed, model, condition, utterance).

    Attributes:
        fold: int64 ``[n]``, fold index.
        session: str ``[n]``, the fold's test session (``"1"`` .. ``"5"``).
        seed: int64 ``[n]``, training seed.
        model: str ``[n]`` (``"text"``, ``"audio"``, ``"multimodal"``, ``"late"``, ...).
        condition: str ``[n]`` (``"clean"``, ``"adj"``, ``"pitch+adj"``, ``"snr-10"``, ...).
        utt_id: str ``[n]``.
        label: int64 ``[n]``, true class index into ``labels``.
        pred: int64 ``[n]``, predicted class index.
        probs: float32 ``[n, C]``, class probabilities.
        affected: bool ``[n]``, whether the condition changed this utterance's input (False for clean).
        labels: Class names, ``C`` of them.
        texts: Optional ``(condition, utt_id) -> text`` as fed to the text model (for the examples).
    """

    fold: np.ndarray
    session: np.ndarray
    seed: np.ndarray
    model: np.ndarray
    condition: np.ndarray
    utt_id: np.ndarray
    label: np.ndarray
    pred: np.ndarray
    probs: np.ndarray
    affected: np.ndarray
    labels: tuple[str, ...]
    texts: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = tuple(str(x) for x in self.labels)
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be non-empty and unique, got {self.labels!r}")
        for name in _INT_COLUMNS:
            arr = np.asarray(getattr(self, name))
            if arr.size and arr.dtype.kind not in "iub":
                raise ValueError(f"column {name!r} must hold integers, got dtype {arr.dtype}")
            setattr(self, name, arr.astype(np.int64).reshape(-1))
        for name in _STR_COLUMNS:
            setattr(self, name, _as_str_array(getattr(self, name)).reshape(-1))
        self.affected = np.asarray(self.affected).astype(bool).reshape(-1)
        n = len(self.fold)
        probs = np.asarray(self.probs, dtype=np.float32)
        if probs.size == 0:
            probs = probs.reshape(0, len(self.labels))
        self.probs = probs
        for name in COLUMNS:
            if len(getattr(self, name)) != n:
                raise ValueError(f"column {name!r} has {len(getattr(self, name))} rows, 'fold' has {n}")
        if probs.ndim != 2 or probs.shape[1] != len(self.labels):
            raise ValueError(f"probs must have shape [n, {len(self.labels)}], got {probs.shape}")
        for name in ("label", "pred"):
            col = getattr(self, name)
            if col.size and (col.min() < 0 or col.max() >= len(self.labels)):
                raise ValueError(f"column {name!r} holds a class index outside [0, {len(self.labels)})")
        self.texts = {(str(c), str(u)): str(t) for (c, u), t in dict(self.texts).items()}

    def __len__(self) -> int:
        return len(self.fold)

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.labels)

    def unique(self, column: str) -> tuple[Any, ...]:
        """Distinct values of a column, sorted (strings in natural order).

        Args:
            column: A column name other than ``probs``.

        Returns:
            The sorted distinct values as Python scalars.

        Raises:
            ValueError: Unknown column.
        """
        if column not in COLUMNS or column == "probs":
            raise ValueError(f"unknown column {column!r}; choose one of {[c for c in COLUMNS if c != 'probs']}")
        values = np.unique(getattr(self, column)).tolist()
        return tuple(sorted(values, key=natural_key) if column in _STR_COLUMNS else values)

    def take(self, index: np.ndarray) -> Predictions:
        """Rows by boolean mask or integer index.

        Args:
            index: A boolean mask of length ``n`` or integer row indices.

        Returns:
            A new :class:`Predictions` with the same labels and texts.
        """
        return Predictions(
            **{name: getattr(self, name)[index] for name in COLUMNS}, labels=self.labels, texts=dict(self.texts)
        )

    def select(self, **filters: Any) -> Predictions:
        """Rows whose columns match every filter.

        A filter value is a scalar (equality) or any other iterable (membership):
        ``preds.select(model="text", condition=["clean", "adj"], seed=0, affected=True)``.

        Args:
            **filters: ``column=value`` pairs over any column but ``probs``.

        Returns:
            The matching rows.

        Raises:
            ValueError: Unknown column.
        """
        mask = np.ones(len(self), dtype=bool)
        for name, value in filters.items():
            if name not in COLUMNS or name == "probs":
                raise ValueError(f"cannot filter on {name!r}; columns: {[c for c in COLUMNS if c != 'probs']}")
            col = getattr(self, name)
            if isinstance(value, (str, bytes)) or np.isscalar(value):
                mask &= col == value
            else:
                mask &= np.isin(col, np.asarray(list(value)))
        return self.take(mask)

    @classmethod
    def from_blocks(cls, blocks: Sequence[Mapping[str, np.ndarray]], *, labels: Sequence[str],
                    texts: Mapping[tuple[str, str], str] | None = None) -> Predictions:
        """Rows given as blocks of parallel columns (one dict of :data:`COLUMNS` arrays per block).

        Args:
            blocks: The blocks, in row order; none gives an empty table.
            labels: Class names.
            texts: ``(condition, utt_id) -> text``.

        Returns:
            All rows.
        """
        def empty(name: str) -> np.ndarray:
            if name == "probs":
                return np.zeros((0, len(labels)), np.float32)
            return np.zeros(0, dtype=object if name in _STR_COLUMNS else np.int64 if name in _INT_COLUMNS else bool)

        cols = {name: np.concatenate([b[name] for b in blocks]) if blocks else empty(name) for name in COLUMNS}
        return cls(**cols, labels=tuple(labels), texts=dict(texts or {}))

    @classmethod
    def concat(cls, parts: Sequence[Predictions]) -> Predictions:
        """Stack predictions with the same labels.

        Args:
            parts: At least one :class:`Predictions`.

        Returns:
            All rows, in order; texts merged.

        Raises:
            ValueError: No parts, or parts with different labels.
        """
        if not parts:
            raise ValueError("concat needs at least one Predictions")
        labels = parts[0].labels
        if any(p.labels != labels for p in parts):
            raise ValueError("cannot concatenate predictions over different labels")
        texts: dict[tuple[str, str], str] = {}
        for p in parts:
            texts.update(p.texts)
        cols = {name: np.concatenate([getattr(p, name) for p in parts]) for name in COLUMNS}
        return cls(**cols, labels=labels, texts=texts)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the predictions to an HDF5 file (atomically: a temporary file renamed over ``path``).

        Layout: one dataset per column (strings as fixed-length UTF-8, gzip), ``labels`` as a UTF-8
        string dataset, ``texts/condition``, ``texts/utt_id``, ``texts/text``; root attributes
        ``format``, ``version`` and ``featcache_version``. No pickle.

        Args:
            path: Destination file.

        Returns:
            The path written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = PREDICTIONS_FORMAT
                f.attrs["version"] = PREDICTIONS_VERSION
                f.attrs["featcache_version"] = __version__
                f.create_dataset("labels", data=np.array(self.labels, dtype=object), dtype=h5py.string_dtype("utf-8"))
                opts: dict[str, Any] = {"compression": "gzip", "shuffle": True} if len(self) else {}
                for name in COLUMNS:
                    col = getattr(self, name)
                    if name in _STR_COLUMNS:
                        encoded = _encode_utf8(col)
                        width = max(1, encoded.dtype.itemsize)
                        f.create_dataset(name, data=encoded.astype(h5py.string_dtype("utf-8", width)), **opts)
                    else:
                        f.create_dataset(name, data=col, **opts)
                keys = sorted(self.texts)
                g = f.create_group("texts")
                vlen = h5py.string_dtype("utf-8")
                g.create_dataset("condition", data=np.array([k[0] for k in keys], dtype=object), dtype=vlen)
                g.create_dataset("utt_id", data=np.array([k[1] for k in keys], dtype=object), dtype=vlen)
                g.create_dataset("text", data=np.array([self.texts[k] for k in keys], dtype=object), dtype=vlen)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Predictions:
        """Read predictions written by :meth:`save`.

        Args:
            path: An HDF5 file.

        Returns:
            The predictions.

        Raises:
            FeatcacheError: The file is missing, unreadable, not a predictions file, or from a newer version.
        """
        path = Path(path)
        if not path.is_file():
            raise FeatcacheError(f"predictions file {path} does not exist; run `featcache evaluate` to write it")
        try:
            with h5py.File(path, "r") as f:
                fmt = f.attrs.get("format")
                if isinstance(fmt, bytes):
                    fmt = fmt.decode("utf-8")
                if fmt != PREDICTIONS_FORMAT:
                    raise FeatcacheError(
                        f"{path} is not a featcache predictions file (format {fmt!r}); write it with Predictions.save"
                    )
                version = int(f.attrs.get("version", 0))
                if version > PREDICTIONS_VERSION:
                    raise FeatcacheError(
                        f"{path} has predictions format version {version}, newer than {PREDICTIONS_VERSION}; "
                        "upgrade featcache to read it"
                    )
                missing = [name for name in (*COLUMNS, "labels") if name not in f]
                if missing:
                    raise FeatcacheError(f"{path} lacks datasets {missing}; re-run `featcache evaluate` to rewrite it")
                labels = tuple(f["labels"].asstr()[()].tolist())
                cols: dict[str, np.ndarray] = {}
                for name in COLUMNS:
                    data = f[name][()]
                    cols[name] = _decode_utf8(data) if name in _STR_COLUMNS else data
                texts: dict[tuple[str, str], str] = {}
                if "texts" in f:
                    g = f["texts"]
                    conds = g["condition"].asstr()[()].tolist()
                    utts = g["utt_id"].asstr()[()].tolist()
                    vals = g["text"].asstr()[()].tolist()
                    texts = {(c, u): t for c, u, t in zip(conds, utts, vals)}
        except FeatcacheError:
            raise
        except (OSError, KeyError, ValueError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FeatcacheError(f"cannot read predictions file {path} ({msg}); re-run `featcache evaluate`") from None
        try:
            return cls(**cols, labels=labels, texts=texts)
        except ValueError as exc:
            raise FeatcacheError(
                f"predictions file {path} is inconsistent ({exc}); re-run `featcache evaluate`"
            ) from None


# ----------------------------------------------------------------------------------------------
# scores of one group
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """Classification scores of one group of predictions.

    Attributes:
        n: Number of predictions.
        accuracy: Share of correct predictions.
        uar: Unweighted average recall over the classes present in the true labels (balanced accuracy).
        macro_f1: Mean F1 over the classes present in the true or the predicted labels.
    """

    n: int
    accuracy: float
    uar: float
    macro_f1: float


def classification_scores(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> Scores:
    """Accuracy, UAR and macro-F1 of one group, by scikit-learn.

    Args:
        y_true: True class indices.
        y_pred: Predicted class indices.

    Returns:
        The scores; NaN for an empty group.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.size == 0:
        return Scores(0, math.nan, math.nan, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Scores(
            n=int(y_true.size),
            accuracy=float(accuracy_score(y_true, y_pred)),
            uar=float(balanced_accuracy_score(y_true, y_pred)),
            macro_f1=float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        )


def confusion(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, *, n_classes: int) -> np.ndarray:
    """Confusion matrix over all classes (rows: true, columns: predicted), by scikit-learn.

    Args:
        y_true: True class indices.
        y_pred: Predicted class indices.
        n_classes: Number of classes (the matrix is always ``n_classes x n_classes``).

    Returns:
        int64 ``[n_classes, n_classes]``.
    """
    return confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(range(n_classes))).astype(np.int64)


def scores_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy, UAR and macro-F1 of a stack of confusion matrices (same definitions as scikit-learn's).

    Args:
        cm: ``[..., C, C]`` counts, rows true, columns predicted.

    Returns:
        ``(accuracy, uar, macro_f1)``, each ``cm.shape[:-2]``; NaN for empty matrices.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    true_n = cm.sum(axis=-1)
    pred_n = cm.sum(axis=-2)
    total = true_n.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = tp.sum(axis=-1) / total
        present = true_n > 0
        recall = np.where(present, tp / np.where(present, true_n, 1), 0.0)
        uar = recall.sum(axis=-1) / present.sum(axis=-1)
        seen = (true_n + pred_n) > 0
        f1 = np.where(seen, 2 * tp / np.where(seen, true_n + pred_n, 1), 0.0)
        macro_f1 = f1.sum(axis=-1) / seen.sum(axis=-1)
    return accuracy, uar, macro_f1


# ----------------------------------------------------------------------------------------------
# result types
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedStat:
    """A per-seed statistic with its mean and std over seeds.

    Attributes:
        seeds: The seeds.
        values: One value per seed (NaN where undefined).
    """

    seeds: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        """Mean over seeds (NaNs ignored)."""
        return mean_std(self.values)[0]

    @property
    def std(self) -> float:
        """Sample std over seeds (NaN with fewer than two seeds)."""
        return mean_std(self.values)[1]

    @classmethod
    def empty(cls) -> SeedStat:
        """A statistic with no seeds (mean and std NaN)."""
        return cls((), ())


@dataclass(frozen=True)
class ResultRow:
    """Scores of one (fold, seed, model, condition) group.

    Attributes:
        fold: Fold index.
        session: The fold's test session.
        seed: Training seed.
        model: Model name.
        condition: Condition name.
        n: Number of utterances.
        accuracy: Accuracy.
        uar: Unweighted average recall.
        macro_f1: Macro-F1.
        flip_rate: Share of predictions differing from the clean ones (over ``n_matched``); 0 for clean.
        n_matched: Utterances that also have a clean prediction.
        n_affected: Utterances the condition changed.
        accuracy_affected: Accuracy on the affected utterances that have a clean prediction.
        clean_accuracy_affected: Clean accuracy on those same utterances.
    """

    fold: int
    session: str
    seed: int
    model: str
    condition: str
    n: int
    accuracy: float
    uar: float
    macro_f1: float
    flip_rate: float
    n_matched: int
    n_affected: int
    accuracy_affected: float
    clean_accuracy_affected: float


@dataclass(frozen=True)
class ModalImpact:
    """The impact of one part of an attack on a unimodal model (the paper's "Impact S. Modal").

    Attributes:
        model: The unimodal model.
        condition: Its condition carrying that part of the attack.
        impact: Its impact (percent) per seed.
    """

    model: str
    condition: str
    impact: SeedStat


@dataclass(frozen=True)
class BootstrapCI:
    """A paired bootstrap percentile interval.

    Attributes:
        estimate: The statistic on the observed data.
        low: Lower bound.
        high: Upper bound.
        confidence: Confidence level.
        n_resamples: Number of resamples.
        seed: Seed of the resampling.
        n_utterances: Utterances per seed in the paired sample.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    seed: int
    n_utterances: int

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies strictly on one side of 0."""
        return bool(self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class ImpactDifference:
    """Is a fusion model hurt less than the unimodal model by the same attack?

    Attributes:
        model: The fusion model.
        condition: Its condition.
        unimodal: The unimodal model.
        unimodal_condition: The unimodal model's condition (same attack).
        impact: Impact on the fusion model (percent, per seed).
        unimodal_impact: Impact on the unimodal model.
        difference: ``impact - unimodal_impact`` per seed (positive: the fusion model loses less).
        ci: Bootstrap interval of the mean difference, or ``None`` when not computed.
    """

    model: str
    condition: str
    unimodal: str
    unimodal_condition: str
    impact: SeedStat
    unimodal_impact: SeedStat
    difference: SeedStat
    ci: BootstrapCI | None


@dataclass(frozen=True)
class Additivity:
    """Impact of a combined audio+text attack against the sum of its two parts' impacts, one model.

    Attributes:
        model: The model.
        condition: The combined condition.
        audio_condition: The model's audio-only condition.
        text_condition: The model's text-only condition.
        combined: Impact of the combined attack per seed.
        audio: Impact of the audio part.
        text: Impact of the text part.
        sum: ``audio + text`` per seed.
        difference: ``combined - sum`` per seed (0 when the parts add up).
        ci: Bootstrap interval of the mean difference, or ``None``.
    """

    model: str
    condition: str
    audio_condition: str
    text_condition: str
    combined: SeedStat
    audio: SeedStat
    text: SeedStat
    sum: SeedStat
    difference: SeedStat
    ci: BootstrapCI | None


@dataclass(frozen=True)
class AffectedStats:
    """Scores on the utterances a condition actually changed.

    Attributes:
        n: Utterances per seed (mean over seeds).
        n_affected: Affected utterances per seed (mean over seeds).
        share: ``n_affected / n``.
        accuracy: Session-averaged accuracy under attack on the affected utterances, per seed.
        clean_accuracy: Session-averaged clean accuracy on the same utterances, per seed.
        impact: Impact on that subset (percent), per seed.
    """

    n: float
    n_affected: float
    share: float
    accuracy: SeedStat
    clean_accuracy: SeedStat
    impact: SeedStat


@dataclass(frozen=True)
class SummaryRow:
    """Aggregated results of one (model, condition) over folds and seeds.

    Attributes:
        model: Model name.
        condition: Condition name.
        seeds: Seeds present.
        n: Utterances per seed (mean over seeds).
        sessions: Test sessions present, natural order.
        session_accuracy: Mean over seeds of each session's accuracy (same order as ``sessions``).
        accuracy: The Avg. column (mean of the session accuracies) per seed.
        uar: Session-averaged UAR per seed.
        macro_f1: Session-averaged macro-F1 per seed.
        impact: Impact (percent) per seed; empty for the clean condition.
        single_modal: Impact S. Modal, audio part first; empty for unimodal models.
        flip_rate: Flip rate per seed.
        affected: Affected-subset statistics; ``None`` for the clean condition.
        difference: Fusion-minus-unimodal impact with its bootstrap interval, where it applies.
    """

    model: str
    condition: str
    seeds: tuple[int, ...]
    n: float
    sessions: tuple[str, ...]
    session_accuracy: tuple[float, ...]
    accuracy: SeedStat
    uar: SeedStat
    macro_f1: SeedStat
    impact: SeedStat
    single_modal: tuple[ModalImpact, ...]
    flip_rate: SeedStat
    affected: AffectedStats | None
    difference: ImpactDifference | None


@dataclass
class _Group:
    fold: int
    session: str
    seed: int
    model: str
    condition: str
    n: int
    correct: int
    cm: np.ndarray
    flips: int
    n_matched: int
    n_affected: int
    n_affected_matched: int
    correct_affected: int
    clean_correct_affected: int
    rows: np.ndarray  # row indices sorted by utterance code


# ----------------------------------------------------------------------------------------------
# analysis
# ----------------------------------------------------------------------------------------------


def order_models(models: Iterable[str], *, text_model: str = TEXT_MODEL, audio_model: str = AUDIO_MODEL,
                 multimodal_model: str = MULTIMODAL_MODEL) -> list[str]:
    """Text, audio and multimodal models first, then the others in natural order.

    Args:
        models: Model names.
        text_model: Name of the text model.
        audio_model: Name of the audio model.
        multimodal_model: Name of the paper's fusion model.

    Returns:
        The ordered names.
    """
    first = [m for m in (text_model, audio_model, multimodal_model) if m in set(models)]
    return first + sorted(set(models) - set(first), key=natural_key)


def order_conditions(conditions: Iterable[str], *, clean: str = CLEAN) -> list[str]:
    """Clean first, then the paper's attacks in its order, then text-only, audio-only, combined, unknown.

    Args:
        conditions: Condition names.
        clean: Name of the clean condition.

    Returns:
        The ordered names.
    """
    paper = {condition_key(c): i for i, c in enumerate(PAPER_CONDITIONS)}

    def key(c: str) -> tuple[Any, ...]:
        if c == clean:
            return (0, 0, ())
        k = condition_key(c)
        if k in paper:
            return (1, paper[k], ())
        if k is None:
            return (5, 0, natural_key(c))
        group = 2 if k[0] is None else 3 if k[1] is None else 4
        return (group, 0, natural_key(c))

    return sorted(set(conditions), key=key)


class Analysis:
    """Grouped counts of a :class:`Predictions` table, and every statistic derived from them.

    Built once (one pass of sorting and counting); each method is then cheap.

    Args:
        predictions: The predictions.
        clean: Name of the clean condition.
        text_model: Name of the unimodal text model.
        audio_model: Name of the unimodal audio model.
        multimodal_model: Name of the paper's fusion model.

    Raises:
        FeatcacheError: Duplicate rows for one (fold, seed, model, condition, utterance), or a fold
            whose rows name more than one session.
    """

    def __init__(
        self,
        predictions: Predictions,
        *,
        clean: str = CLEAN,
        text_model: str = TEXT_MODEL,
        audio_model: str = AUDIO_MODEL,
        multimodal_model: str = MULTIMODAL_MODEL,
    ) -> None:
        self.predictions = predictions
        self.clean = clean
        self.text_model = text_model
        self.audio_model = audio_model
        self.multimodal_model = multimodal_model
        p = predictions
        self._correct = p.pred == p.label
        codes: dict[str, np.ndarray] = {}
        sizes: dict[str, int] = {}
        for name in ("fold", "seed", "model", "condition", "utt_id", "session"):
            uniq, inv = np.unique(getattr(p, name), return_inverse=True)
            codes[name] = inv.reshape(-1).astype(np.int64)
            sizes[name] = max(1, len(uniq))
        self._utt_code = codes["utt_id"]
        # (fold, seed, model, utt) identifies a clean counterpart
        pair = np.ravel_multi_index(
            (codes["fold"], codes["seed"], codes["model"], codes["utt_id"]),
            (sizes["fold"], sizes["seed"], sizes["model"], sizes["utt_id"]),
        )
        group = np.ravel_multi_index(
            (codes["fold"], codes["seed"], codes["model"], codes["condition"]),
            (sizes["fold"], sizes["seed"], sizes["model"], sizes["condition"]),
        )
        full = group * sizes["utt_id"] + codes["utt_id"]
        order = np.argsort(full, kind="stable")
        if len(order) > 1 and np.any(np.diff(full[order]) == 0):
            i = order[np.flatnonzero(np.diff(full[order]) == 0)[0]]
            raise FeatcacheError(
                f"predictions hold duplicate rows for fold {p.fold[i]}, seed {p.seed[i]}, model {p.model[i]!r}, "
                f"condition {p.condition[i]!r}, utterance {p.utt_id[i]!r}; write each row once"
            )
        is_clean = p.condition == clean
        clean_rows = np.flatnonzero(is_clean)
        clean_pairs = pair[clean_rows]
        srt = np.argsort(clean_pairs, kind="stable")
        clean_pairs, clean_rows = clean_pairs[srt], clean_rows[srt]
        if len(clean_pairs):
            pos = np.minimum(np.searchsorted(clean_pairs, pair), len(clean_pairs) - 1)
            has_clean = clean_pairs[pos] == pair
            match = np.where(has_clean, clean_rows[pos], -1)
        else:
            has_clean = np.zeros(len(p), dtype=bool)
            match = np.full(len(p), -1, dtype=np.int64)
        clean_pred = np.where(has_clean, p.pred[np.maximum(match, 0)], -1) if len(p) else np.zeros(0, np.int64)
        clean_correct = has_clean & (clean_pred == p.label)
        flipped = has_clean & (clean_pred != p.pred)
        aff = p.affected & ~is_clean
        aff_matched = aff & has_clean

        gid_sorted = group[order]
        starts = np.flatnonzero(np.r_[True, gid_sorted[1:] != gid_sorted[:-1]]) if len(order) else np.zeros(0, int)
        ends = np.r_[starts[1:], len(order)]
        gids = gid_sorted[starts] if len(order) else np.zeros(0, int)
        ginv = np.searchsorted(gids, group)
        n_groups = len(gids)
        C = p.n_classes

        def per_group(x: np.ndarray) -> np.ndarray:
            return np.bincount(ginv, weights=x.astype(np.float64), minlength=n_groups).astype(np.int64)

        cms = np.bincount(ginv * C * C + p.label * C + p.pred, minlength=n_groups * C * C).reshape(n_groups, C, C)
        n_rows = np.bincount(ginv, minlength=n_groups)
        correct = per_group(self._correct)
        flips = per_group(flipped)
        matched = per_group(has_clean)
        n_aff = per_group(aff)
        n_aff_m = per_group(aff_matched)
        corr_aff = per_group(aff_matched & self._correct)
        ccorr_aff = per_group(aff_matched & clean_correct)

        sess_sorted = codes["session"][order]
        if n_groups:
            s_min = np.minimum.reduceat(sess_sorted, starts)
            s_max = np.maximum.reduceat(sess_sorted, starts)
        self._groups: dict[tuple[str, str], dict[int, dict[int, _Group]]] = {}
        fold_session: dict[int, str] = {}
        for g in range(n_groups):
            rows = order[starts[g]:ends[g]]
            r0 = rows[0]
            fold, seed = int(p.fold[r0]), int(p.seed[r0])
            session = str(p.session[r0])
            if s_min[g] != s_max[g] or fold_session.setdefault(fold, session) != session:
                other = sorted({*np.unique(p.session[rows]).tolist(), fold_session[fold]}, key=natural_key)
                raise FeatcacheError(
                    f"fold {fold} names more than one test session ({', '.join(other)}); "
                    "give every row of a fold its fold's test session"
                )
            grp = _Group(
                fold=fold, session=session, seed=seed, model=str(p.model[r0]), condition=str(p.condition[r0]),
                n=int(n_rows[g]), correct=int(correct[g]), cm=cms[g], flips=int(flips[g]),
                n_matched=int(matched[g]), n_affected=int(n_aff[g]), n_affected_matched=int(n_aff_m[g]),
                correct_affected=int(corr_aff[g]), clean_correct_affected=int(ccorr_aff[g]), rows=rows,
            )
            self._groups.setdefault((grp.model, grp.condition), {}).setdefault(seed, {})[fold] = grp
        self._weights_cache: dict[tuple[int, int, int, int], np.ndarray] = {}

    # -- listing ---------------------------------------------------------------------------------

    def models(self) -> list[str]:
        """Models present, text/audio/multimodal first.

        Returns:
            Ordered model names.
        """
        return order_models({m for m, _ in self._groups}, text_model=self.text_model,
                            audio_model=self.audio_model, multimodal_model=self.multimodal_model)

    def fusion_models(self) -> list[str]:
        """Models other than the two unimodal ones, multimodal first.

        Returns:
            Ordered model names.
        """
        return [m for m in self.models() if m not in (self.text_model, self.audio_model)]

    def conditions(self, model: str | None = None) -> list[str]:
        """Conditions present (for one model, or for any), clean first, then the paper's order.

        Args:
            model: A model name, or ``None`` for all models.

        Returns:
            Ordered condition names.
        """
        return order_conditions({c for m, c in self._groups if model is None or m == model}, clean=self.clean)

    def has(self, model: str, condition: str) -> bool:
        """Whether predictions exist for a model under a condition.

        Args:
            model: Model name.
            condition: Condition name.

        Returns:
            True when at least one row exists.
        """
        return (model, condition) in self._groups

    def seeds(self, model: str | None = None, condition: str | None = None) -> tuple[int, ...]:
        """Seeds present (optionally for one model and condition).

        Args:
            model: Model name or ``None``.
            condition: Condition name or ``None``.

        Returns:
            Sorted seeds.
        """
        out = {s for (m, c), by_seed in self._groups.items()
               if (model is None or m == model) and (condition is None or c == condition) for s in by_seed}
        return tuple(sorted(out))

    def sessions(self) -> tuple[str, ...]:
        """Test sessions present, natural order.

        Returns:
            Session names.
        """
        return tuple(sorted({g.session for by_seed in self._groups.values() for folds in by_seed.values()
                             for g in folds.values()}, key=natural_key))

    def find_condition(self, model: str, key: tuple[str | None, str | None]) -> str | None:
        """The condition of a model whose canonical key is ``key``.

        Args:
            model: Model name.
            key: ``(audio_spec, text_spec)``.

        Returns:
            The condition name, or ``None`` when the model has none with that key.
        """
        for c in self.conditions(model):
            if condition_key(c) == key:
                return c
        return None

    # -- per-group ------------------------------------------------------------------------------

    def results(self) -> list[ResultRow]:
        """The tidy table: one row per (fold, seed, model, condition).

        Returns:
            Rows ordered by model, condition, seed, fold.
        """
        out: list[ResultRow] = []
        for model in self.models():
            for cond in self.conditions(model):
                for seed, folds in sorted(self._groups[(model, cond)].items()):
                    for fold, g in sorted(folds.items()):
                        acc, uar, f1 = scores_from_confusion(g.cm)
                        flip = g.flips / g.n_matched if g.n_matched else math.nan
                        am = g.n_affected_matched
                        out.append(ResultRow(
                            fold=fold, session=g.session, seed=seed, model=model, condition=cond, n=g.n,
                            accuracy=float(acc), uar=float(uar), macro_f1=float(f1), flip_rate=flip,
                            n_matched=g.n_matched, n_affected=g.n_affected,
                            accuracy_affected=g.correct_affected / am if am else math.nan,
                            clean_accuracy_affected=g.clean_correct_affected / am if am else math.nan,
                        ))
        return out

    def _by_session(self, model: str, condition: str, seed: int) -> dict[str, list[_Group]]:
        out: dict[str, list[_Group]] = {}
        for g in self._groups.get((model, condition), {}).get(seed, {}).values():
            out.setdefault(g.session, []).append(g)
        return out

    def session_accuracy(self, model: str, condition: str, seed: int) -> dict[str, float]:
        """Accuracy per test session for one seed (folds of one session pooled).

        Args:
            model: Model name.
            condition: Condition name.
            seed: Seed.

        Returns:
            ``session -> accuracy``; empty when absent.
        """
        return {s: sum(g.correct for g in gs) / sum(g.n for g in gs)
                for s, gs in self._by_session(model, condition, seed).items()}

    def _session_scores(self, model: str, condition: str, seed: int) -> dict[str, tuple[float, float, float]]:
        out = {}
        for s, gs in self._by_session(model, condition, seed).items():
            acc, uar, f1 = scores_from_confusion(np.sum([g.cm for g in gs], axis=0))
            out[s] = (float(acc), float(uar), float(f1))
        return out

    def confusion(self, model: str, condition: str, *, seed: int | None = None) -> np.ndarray:
        """Confusion matrix of a model under a condition, summed over folds (and seeds unless one is given).

        Args:
            model: Model name.
            condition: Condition name.
            seed: One seed, or ``None`` for all.

        Returns:
            int64 ``[C, C]``, rows true, columns predicted, in the order of ``predictions.labels``.

        Raises:
            KeyError: No predictions for that model, condition (and seed).
        """
        by_seed = self._groups.get((model, condition), {})
        groups = [g for s, folds in by_seed.items() if seed is None or s == seed for g in folds.values()]
        if not groups:
            raise KeyError(f"no predictions for model {model!r} under condition {condition!r}"
                           + ("" if seed is None else f" with seed {seed}"))
        return np.sum([g.cm for g in groups], axis=0).astype(np.int64)

    def accuracy(self, model: str, condition: str) -> SeedStat:
        """The Avg. column: per seed, the mean of the per-session accuracies.

        Args:
            model: Model name.
            condition: Condition name.

        Returns:
            Per-seed averages.
        """
        seeds = self.seeds(model, condition)
        return SeedStat(seeds, tuple(float(np.mean(list(self.session_accuracy(model, condition, s).values())))
                                     for s in seeds))

    def impact(self, model: str, condition: str) -> SeedStat:
        """Impact (percent) of a condition on a model, per seed, against the model's clean condition.

        Both averages run over the sessions the condition and the clean condition share for that seed.

        Args:
            model: Model name.
            condition: Condition name.

        Returns:
            Per-seed impacts; seeds without clean predictions are left out.
        """
        seeds, values = [], []
        for s in self.seeds(model, condition):
            att = self.session_accuracy(model, condition, s)
            base = self.session_accuracy(model, self.clean, s)
            shared = sorted(set(att) & set(base))
            if not shared:
                continue
            seeds.append(s)
            values.append(relative_change(float(np.mean([att[x] for x in shared])),
                                          float(np.mean([base[x] for x in shared]))))
        return SeedStat(tuple(seeds), tuple(values))

    def flip_rate(self, model: str, condition: str) -> SeedStat:
        """Share of predictions that change from clean, per seed (pooled over folds).

        Args:
            model: Model name.
            condition: Condition name.

        Returns:
            Per-seed flip rates (NaN for a seed without clean counterparts).
        """
        seeds = self.seeds(model, condition)
        vals = []
        for s in seeds:
            gs = self._groups[(model, condition)][s].values()
            matched = sum(g.n_matched for g in gs)
            vals.append(sum(g.flips for g in gs) / matched if matched else math.nan)
        return SeedStat(seeds, tuple(vals))

    def affected(self, model: str, condition: str) -> AffectedStats:
        """Scores on the utterances the condition changed (and that have a clean prediction).

        Per seed, the attacked and the clean accuracy of the affected utterances are computed per
        session and averaged over the sessions that have any, like the Avg. column.

        Args:
            model: Model name.
            condition: Condition name.

        Returns:
            The subset's size and scores.
        """
        seeds = self.seeds(model, condition)
        n, n_aff, acc, cacc, imp = [], [], [], [], []
        for s in seeds:
            by_sess = self._by_session(model, condition, s)
            n.append(sum(g.n for gs in by_sess.values() for g in gs))
            n_aff.append(sum(g.n_affected for gs in by_sess.values() for g in gs))
            a_list, c_list = [], []
            for gs in by_sess.values():
                m = sum(g.n_affected_matched for g in gs)
                if m:
                    a_list.append(sum(g.correct_affected for g in gs) / m)
                    c_list.append(sum(g.clean_correct_affected for g in gs) / m)
            a = float(np.mean(a_list)) if a_list else math.nan
            c = float(np.mean(c_list)) if c_list else math.nan
            acc.append(a)
            cacc.append(c)
            imp.append(relative_change(a, c))
        n_mean = float(np.mean(n)) if n else math.nan
        aff_mean = float(np.mean(n_aff)) if n_aff else math.nan
        return AffectedStats(
            n=n_mean, n_affected=aff_mean, share=aff_mean / n_mean if n_mean else math.nan,
            accuracy=SeedStat(seeds, tuple(acc)), clean_accuracy=SeedStat(seeds, tuple(cacc)),
            impact=SeedStat(seeds, tuple(imp)),
        )

    def parts(self, model: str, condition: str) -> list[tuple[str, str]]:
        """The unimodal (model, condition) cells carrying the parts of an attack, audio part first.

        Args:
            model: A fusion model (a unimodal model gets ``[]``).
            condition: Its condition.

        Returns:
            ``(unimodal model, its condition)`` for each part some unimodal model was evaluated on.
        """
        if model in (self.text_model, self.audio_model) or condition == self.clean:
            return []
        key = condition_key(condition)
        if key is None:
            return []
        out = []
        audio, text = key
        if audio is not None and (c := self.find_condition(self.audio_model, (audio, None))) is not None:
            out.append((self.audio_model, c))
        if text is not None and (c := self.find_condition(self.text_model, (None, text))) is not None:
            out.append((self.text_model, c))
        return out

    def single_modal(self, model: str, condition: str) -> tuple[ModalImpact, ...]:
        """The paper's "Impact S. Modal": the unimodal impacts of the parts of an attack.

        Args:
            model: A fusion model.
            condition: Its condition.

        Returns:
            One :class:`ModalImpact` per part found, audio part first.
        """
        return tuple(ModalImpact(m, c, self.impact(m, c)) for m, c in self.parts(model, condition))

    # -- bootstrap ------------------------------------------------------------------------------

    def _paired(self, cells: Sequence[tuple[str, str]]) -> tuple[tuple[int, ...], list[tuple[int, str, np.ndarray]]]:
        """Correctness of every cell on the utterances all cells share, per fold: ``[cells, seeds, n_f]``."""
        seeds = set(self.seeds(*cells[0]))
        for cell in cells[1:]:
            seeds &= set(self.seeds(*cell))
        seed_list = tuple(sorted(seeds))
        if not seed_list:
            return (), []
        folds = None
        for m, c in cells:
            for s in seed_list:
                fs = set(self._groups[(m, c)][s])
                folds = fs if folds is None else folds & fs
        out = []
        for fold in sorted(folds or ()):
            groups = [[self._groups[cell][s][fold] for s in seed_list] for cell in cells]
            common = None
            for row in groups:
                for g in row:
                    u = self._utt_code[g.rows]
                    common = u if common is None else np.intersect1d(common, u, assume_unique=True)
            if common is None or len(common) == 0:
                continue
            mat = np.empty((len(cells), len(seed_list), len(common)), dtype=bool)
            for i, row in enumerate(groups):
                for j, g in enumerate(row):
                    u = self._utt_code[g.rows]
                    mat[i, j] = self._correct[g.rows[np.searchsorted(u, common)]]
            out.append((fold, groups[0][0].session, mat))
        return seed_list, out

    def _weights(self, fold: int, n: int, n_resamples: int, seed: int) -> np.ndarray:
        key = (fold, n, n_resamples, seed)
        w = self._weights_cache.get(key)
        if w is None:
            rng = np.random.default_rng([seed % 2**32, fold % 2**32, n])
            idx = rng.integers(0, n, size=(n_resamples, n))
            flat = (np.arange(n_resamples)[:, None] * n + idx).ravel()
            w = np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)
            if len(self._weights_cache) > 256:
                self._weights_cache.clear()
            self._weights_cache[key] = w
        return w

    def bootstrap(
        self,
        cells: Sequence[tuple[str, str]],
        statistic: Callable[[np.ndarray], np.ndarray],
        *,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
    ) -> BootstrapCI | None:
        """Paired, fold-stratified percentile bootstrap of a statistic of session-averaged accuracies.

        Each resample draws, within every fold, as many utterances as the fold shares across all
        cells, with replacement; the same draw serves every cell and every seed. Per cell and seed the
        session accuracies are recomputed and averaged over sessions (the Avg. column).

        Args:
            cells: ``(model, condition)`` pairs.
            statistic: Maps Avg. accuracies ``[cells, seeds, B]`` to per-seed values ``[seeds, B]``;
                the interval is over their mean across seeds.
            n_resamples: Number of resamples ``B``.
            confidence: Confidence level in (0, 1).
            seed: Resampling seed (same seed and data, same interval).

        Returns:
            The interval, or ``None`` when the cells share no seed or utterance.

        Raises:
            ValueError: ``n_resamples < 1`` or ``confidence`` outside (0, 1).
        """
        if n_resamples < 1:
            raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
        if any(cell not in self._groups for cell in cells):
            return None
        seed_list, per_fold = self._paired(cells)
        if not per_fold:
            return None

        def avg_accuracy(weights_of: Callable[[int, int], np.ndarray], b: int) -> np.ndarray:
            correct: dict[str, np.ndarray] = {}
            total: dict[str, np.ndarray] = {}
            for fold, session, mat in per_fold:
                w = weights_of(fold, mat.shape[-1])  # [b, n_f]
                k = mat.reshape(-1, mat.shape[-1]).astype(np.float64) @ w.T  # [cells*seeds, b]
                correct[session] = correct.get(session, 0) + k.reshape(len(cells), len(seed_list), b)
                total[session] = total.get(session, 0) + w.sum(axis=1)
            return np.mean([correct[s] / total[s] for s in correct], axis=0)  # [cells, seeds, b]

        with np.errstate(invalid="ignore", divide="ignore"):
            observed = avg_accuracy(lambda f, n: np.ones((1, n)), 1)
            estimate = float(np.nanmean(statistic(observed), axis=0)[0])
            boot = avg_accuracy(lambda f, n: self._weights(f, n, n_resamples, seed), n_resamples)
            values = np.nanmean(statistic(boot), axis=0)
        alpha = (1 - confidence) / 2
        finite = values[np.isfinite(values)]
        low, high = (np.quantile(finite, [alpha, 1 - alpha]).tolist() if finite.size else (math.nan, math.nan))
        return BootstrapCI(
            estimate=estimate, low=float(low), high=float(high), confidence=confidence, n_resamples=n_resamples,
            seed=seed, n_utterances=int(sum(mat.shape[-1] for _, _, mat in per_fold)),
        )

    def impact_difference(
        self,
        model: str,
        condition: str,
        *,
        unimodal: str | None = None,
        unimodal_condition: str | None = None,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
    ) -> ImpactDifference | None:
        """Fusion-minus-unimodal impact of one attack, with its paired bootstrap interval.

        A positive difference means the fusion model loses less (relatively) than the unimodal model.

        Args:
            model: The fusion model.
            condition: The attack on it.
            unimodal: The unimodal model; by default the one matching the attack's modality.
            unimodal_condition: The unimodal model's condition; by default the one with the same key.
            n_resamples: Bootstrap resamples (0: no interval).
            confidence: Confidence level.
            seed: Resampling seed.

        Returns:
            The comparison, or ``None`` when the attack touches both modalities (no single unimodal
            counterpart) or the counterpart was not evaluated.
        """
        if unimodal is None or unimodal_condition is None:
            parts = self.parts(model, condition)
            key = condition_key(condition)
            if len(parts) != 1 or key is None or (key[0] is not None and key[1] is not None):
                return None
            unimodal, unimodal_condition = parts[0]
        cells = [(model, self.clean), (model, condition), (unimodal, self.clean), (unimodal, unimodal_condition)]
        if any(not self.has(*c) for c in cells):
            return None
        imp, uimp = self.impact(model, condition), self.impact(unimodal, unimodal_condition)
        shared = sorted(set(imp.seeds) & set(uimp.seeds))
        a, b = dict(zip(imp.seeds, imp.values)), dict(zip(uimp.seeds, uimp.values))
        diff = SeedStat(tuple(shared), tuple(a[s] - b[s] for s in shared))

        def stat(acc: np.ndarray) -> np.ndarray:
            return _rel(acc[1], acc[0]) - _rel(acc[3], acc[2])

        ci = self.bootstrap(cells, stat, n_resamples=n_resamples, confidence=confidence, seed=seed) \
            if n_resamples > 0 else None
        return ImpactDifference(model, condition, unimodal, unimodal_condition, imp, uimp, diff, ci)

    def additivity(
        self,
        model: str,
        condition: str,
        *,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
    ) -> Additivity | None:
        """Impact of a combined audio+text attack against the sum of its parts' impacts.

        Args:
            model: The model (evaluated under the combination and under each part alone).
            condition: A combined condition such as ``pitch+adj``.
            n_resamples: Bootstrap resamples (0: no interval).
            confidence: Confidence level.
            seed: Resampling seed.

        Returns:
            The check, or ``None`` when the condition is not a combination or a part is missing.
        """
        key = condition_key(condition)
        if key is None or key[0] is None or key[1] is None:
            return None
        ca = self.find_condition(model, (key[0], None))
        ct = self.find_condition(model, (None, key[1]))
        if ca is None or ct is None or not self.has(model, condition) or not self.has(model, self.clean):
            return None
        comb, ia, it = self.impact(model, condition), self.impact(model, ca), self.impact(model, ct)
        maps = [dict(zip(x.seeds, x.values)) for x in (comb, ia, it)]
        shared = sorted(set(maps[0]) & set(maps[1]) & set(maps[2]))
        total = SeedStat(tuple(shared), tuple(maps[1][s] + maps[2][s] for s in shared))
        diff = SeedStat(tuple(shared), tuple(maps[0][s] - maps[1][s] - maps[2][s] for s in shared))
        cells = [(model, self.clean), (model, ca), (model, ct), (model, condition)]

        def stat(acc: np.ndarray) -> np.ndarray:
            return _rel(acc[3], acc[0]) - _rel(acc[1], acc[0]) - _rel(acc[2], acc[0])

        ci = self.bootstrap(cells, stat, n_resamples=n_resamples, confidence=confidence, seed=seed) \
            if n_resamples > 0 else None
        return Additivity(model, condition, ca, ct, comb, ia, it, total, diff, ci)

    # -- aggregated -----------------------------------------------------------------------------

    def summary_row(
        self,
        model: str,
        condition: str,
        *,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
    ) -> SummaryRow:
        """Aggregate one (model, condition) over folds and seeds.

        Args:
            model: Model name.
            condition: Condition name.
            n_resamples: Bootstrap resamples for the fusion-vs-unimodal interval (0: none).
            confidence: Confidence level.
            seed: Resampling seed.

        Returns:
            The aggregated row.

        Raises:
            KeyError: No predictions for that model and condition.
        """
        if not self.has(model, condition):
            raise KeyError(f"no predictions for model {model!r} under condition {condition!r}")
        seeds = self.seeds(model, condition)
        per_seed = {s: self._session_scores(model, condition, s) for s in seeds}
        sessions = tuple(sorted({x for d in per_seed.values() for x in d}, key=natural_key))
        sess_acc = tuple(float(np.mean([per_seed[s][x][0] for s in seeds if x in per_seed[s]])) for x in sessions)

        def avg(i: int) -> SeedStat:
            return SeedStat(seeds, tuple(float(np.mean([v[i] for v in per_seed[s].values()])) for s in seeds))

        n = float(np.mean([sum(g.n for g in self._groups[(model, condition)][s].values()) for s in seeds]))
        is_clean = condition == self.clean
        diff = None
        if not is_clean and model not in (self.text_model, self.audio_model):
            diff = self.impact_difference(model, condition, n_resamples=n_resamples, confidence=confidence, seed=seed)
        return SummaryRow(
            model=model, condition=condition, seeds=seeds, n=n, sessions=sessions, session_accuracy=sess_acc,
            accuracy=avg(0), uar=avg(1), macro_f1=avg(2),
            impact=SeedStat.empty() if is_clean else self.impact(model, condition),
            single_modal=() if is_clean else self.single_modal(model, condition),
            flip_rate=self.flip_rate(model, condition),
            affected=None if is_clean else self.affected(model, condition),
            difference=diff,
        )

    def summary(
        self,
        *,
        n_resamples: int = DEFAULT_RESAMPLES,
        confidence: float = DEFAULT_CONFIDENCE,
        seed: int = 0,
    ) -> list[SummaryRow]:
        """The aggregated table: one row per (model, condition).

        Args:
            n_resamples: Bootstrap resamples for the fusion-vs-unimodal intervals (0: none).
            confidence: Confidence level.
            seed: Resampling seed.

        Returns:
            Rows ordered by model, then condition.
        """
        return [self.summary_row(m, c, n_resamples=n_resamples, confidence=confidence, seed=seed)
                for m in self.models() for c in self.conditions(m)]


def _rel(attacked: np.ndarray, clean: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(clean > 0, (attacked - clean) / np.where(clean > 0, clean, 1.0) * 100.0, np.nan)


# ----------------------------------------------------------------------------------------------
# convenience functions and CSV
# ----------------------------------------------------------------------------------------------


def results_table(predictions: Predictions, *, clean: str = CLEAN) -> list[ResultRow]:
    """One :class:`ResultRow` per (fold, seed, model, condition).

    Args:
        predictions: The predictions.
        clean: Name of the clean condition.

    Returns:
        The tidy rows.
    """
    return Analysis(predictions, clean=clean).results()


def summary_table(
    predictions: Predictions,
    *,
    clean: str = CLEAN,
    text_model: str = TEXT_MODEL,
    audio_model: str = AUDIO_MODEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> list[SummaryRow]:
    """One :class:`SummaryRow` per (model, condition).

    Args:
        predictions: The predictions.
        clean: Name of the clean condition.
        text_model: Name of the text model.
        audio_model: Name of the audio model.
        n_resamples: Bootstrap resamples (0: no intervals).
        confidence: Confidence level.
        seed: Resampling seed.

    Returns:
        The aggregated rows.
    """
    analysis = Analysis(predictions, clean=clean, text_model=text_model, audio_model=audio_model)
    return analysis.summary(n_resamples=n_resamples, confidence=confidence, seed=seed)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if not math.isfinite(float(value)) else repr(round(float(value), 10))
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return value


def write_csv(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write dict records as CSV (header from the union of keys, first-seen order; NaN/None empty).

    Args:
        records: Rows as mappings.
        path: Destination.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header: list[str] = []
    for r in records:
        header.extend(k for k in r if k not in header)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        w.writeheader()
        for r in records:
            w.writerow({k: _csv_value(r.get(k)) for k in header})
    return path


def result_records(rows: Iterable[ResultRow]) -> list[dict[str, Any]]:
    """Result rows as flat dicts (the columns of ``results.csv``).

    Args:
        rows: Result rows.

    Returns:
        One dict per row.
    """
    return [{f.name: getattr(r, f.name) for f in fields(ResultRow)} for r in rows]


def summary_records(rows: Sequence[SummaryRow], *, text_model: str = TEXT_MODEL,
                    audio_model: str = AUDIO_MODEL) -> list[dict[str, Any]]:
    """Summary rows as flat dicts (the columns of ``summary.csv``).

    Accuracies and flip rates are fractions, impacts percentages; ``acc_ses_<s>`` is the mean over
    seeds of session ``s``'s accuracy.

    Args:
        rows: Summary rows.
        text_model: Name of the text model (for the ``smodal_text_*`` columns).
        audio_model: Name of the audio model (for the ``smodal_audio_*`` columns).

    Returns:
        One dict per row, all with the same keys.
    """
    sessions = sorted({s for r in rows for s in r.sessions}, key=natural_key)
    out = []
    for r in rows:
        rec: dict[str, Any] = {
            "model": r.model, "condition": r.condition, "n_seeds": len(r.seeds), "n": r.n,
        }
        acc = dict(zip(r.sessions, r.session_accuracy))
        for s in sessions:
            rec[f"acc_ses_{s}"] = acc.get(s)
        rec.update({
            "accuracy_mean": r.accuracy.mean, "accuracy_std": r.accuracy.std,
            "uar_mean": r.uar.mean, "uar_std": r.uar.std,
            "macro_f1_mean": r.macro_f1.mean, "macro_f1_std": r.macro_f1.std,
            "impact_mean": r.impact.mean, "impact_std": r.impact.std,
        })
        sm = {m.model: m for m in r.single_modal}
        for tag, name in (("audio", audio_model), ("text", text_model)):
            m = sm.get(name)
            rec[f"smodal_{tag}_condition"] = m.condition if m else None
            rec[f"smodal_{tag}_impact_mean"] = m.impact.mean if m else None
            rec[f"smodal_{tag}_impact_std"] = m.impact.std if m else None
        rec.update({"flip_rate_mean": r.flip_rate.mean, "flip_rate_std": r.flip_rate.std})
        a = r.affected
        rec.update({
            "n_affected": a.n_affected if a else None, "affected_share": a.share if a else None,
            "affected_accuracy_mean": a.accuracy.mean if a else None,
            "affected_clean_accuracy_mean": a.clean_accuracy.mean if a else None,
            "affected_impact_mean": a.impact.mean if a else None,
            "affected_impact_std": a.impact.std if a else None,
        })
        d = r.difference
        ci = d.ci if d else None
        rec.update({
            "ci_versus": f"{d.unimodal}:{d.unimodal_condition}" if d else None,
            "impact_diff_mean": d.difference.mean if d else None,
            "ci_low": ci.low if ci else None, "ci_high": ci.high if ci else None,
            "ci_confidence": ci.confidence if ci else None,
            "ci_excludes_zero": ci.excludes_zero if ci else None,
        })
        out.append(rec)
    return out


def write_results_csv(rows: Iterable[ResultRow], path: str | os.PathLike[str]) -> Path:
    """Write the tidy per-group table.

    Args:
        rows: Result rows.
        path: Destination.

    Returns:
        The path written.
    """
    return write_csv(result_records(rows), path)


def write_summary_csv(rows: Sequence[SummaryRow], path: str | os.PathLike[str], *, text_model: str = TEXT_MODEL,
                      audio_model: str = AUDIO_MODEL) -> Path:
    """Write the aggregated table.

    Args:
        rows: Summary rows.
        path: Destination.
        text_model: Name of the text model.
        audio_model: Name of the audio model.

    Returns:
        The path written.
    """
    return write_csv(summary_records(rows, text_model=text_model, audio_model=audio_model), path)
