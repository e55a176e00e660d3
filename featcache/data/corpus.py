"""The corpus records: one `Utterance`, the `Corpus` that orders them, and the label checks the readers share.

Every problem with the input raises :class:`~featcache.errors.DataError` with a one-line message that
names the file (and line) and what to do about it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from featcache import paper
from featcache.errors import DataError

#: The paper's label set (Table 2) and its merge map (defined in featcache.paper).
PAPER_LABELS = paper.LABELS
PAPER_MERGE = paper.MERGE

log = logging.getLogger("featcache.data")

#: How a manifest's column names a grouping of the utterances (``group:accent``); ``--by group:accent`` is
#: ``--by accent``.
GROUP_PREFIX = "group:"

#: The roles of a fixed split's partitions (:attr:`Corpus.splits`), in table order.
SPLIT_ROLES: tuple[str, ...] = ("train", "dev", "test")


@dataclass(frozen=True)
class Utterance:
    """One classification instance.

    Attributes:
        id: Corpus-unique utterance id (``Ses01F_impro01_F000``).
        session: Session name; folds leave one session out (``"1"`` .. ``"5"`` on IEMOCAP, ``"Fold 1"`` .. for
            published folds). In a corpus with its own fixed split, the partition's name as the corpus calls it
            (``"Train"``, ``"Development"``, ``"Test1"``), whose role :attr:`Corpus.splits` gives.
        speaker: Speaker id (``Ses01F``).
        label: Label after merging (``hap`` for IEMOCAP's ``exc``).
        text: Transcription, or None for an audio-only corpus.
        audio: Absolute path of the wav file, or None for a text-only corpus.
        duration: Length in seconds, when known.
        groups: The utterance's groups, grouping name -> group (``{"sex": "F"}``): what the report's
            robustness by group compares (``featcache evaluate --by sex``). IEMOCAP's reader fills ``sex``
            from the id, a manifest every ``group:NAME`` column, EmoBox's ``speaker``. Not hashed.
    """

    id: str
    session: str
    speaker: str
    label: str
    text: str | None
    audio: Path | None
    duration: float | None
    groups: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Corpus:
    """An ordered, immutable collection of utterances.

    Attributes:
        name: Source spec it was read from (``iemocap:/data/IEMOCAP``).
        root: Directory the corpus lives in.
        utterances: The utterances, sorted by id.
        labels: Label set in class-index order.
        text_source: Where the texts come from when they are not the corpus's own ("" for gold text; e.g.
            ``transcripts/whisper-base-....json`` for a speech recogniser's, see :meth:`with_texts`).
        splits: For a corpus with its own fixed split: each partition (an utterance's ``session``) -> its role,
            ``train``, ``dev`` or ``test``; each test partition is one fold, trained on the train partitions,
            stopped early on the dev partitions (or on a dev set taken from the train side when it has none).
            None (every corpus of sessions or folds): folds leave one session out.
    """

    name: str
    root: Path
    utterances: tuple[Utterance, ...]
    labels: tuple[str, ...]
    text_source: str = field(default="", compare=False)
    splits: Mapping[str, str] | None = field(default=None, hash=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {u.id: i for i, u in enumerate(self.utterances)})

    def __len__(self) -> int:
        return len(self.utterances)

    def __repr__(self) -> str:
        return f"Corpus({self.name!r}, {len(self.utterances)} utterances, labels={self.labels})"

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.utterances)

    def by_id(self, utt_id: str) -> Utterance:
        """Return the utterance with this id.

        Raises:
            DataError: No utterance has that id.
        """
        try:
            return self.utterances[self._index[utt_id]]
        except KeyError:
            raise DataError(f"{self.name}: no utterance with id {utt_id!r}") from None

    @property
    def sessions(self) -> tuple[str, ...]:
        """The folds' test sessions in natural order (fold k tests on the k-th): every session, or with a fixed
        split (:attr:`splits`) its test partitions (normally one)."""
        present = {u.session for u in self.utterances}
        if self.splits is not None:
            present = {s for s in present if self.splits.get(s) == "test"}
        return tuple(sorted(present, key=_natural_key))

    @property
    def partitions(self) -> tuple[str, ...]:
        """Every session (partition) name: in natural order, or with a fixed split train, dev, then test."""
        present = sorted({u.session for u in self.utterances}, key=_natural_key)
        if self.splits is None:
            return tuple(present)
        return tuple(sorted(present, key=lambda s: SPLIT_ROLES.index(self.splits.get(s, "test"))))  # type: ignore[union-attr]

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities every utterance has: a subset of ``("text", "audio")``."""
        mods = []
        if self.utterances and all(u.text is not None for u in self.utterances):
            mods.append("text")
        if self.utterances and all(u.audio is not None for u in self.utterances):
            mods.append("audio")
        return tuple(mods)

    def with_texts(self, texts: Mapping[str, str], *, source: str) -> Corpus:
        """The corpus with each utterance's text replaced (a speech recogniser's transcripts of an audio-only
        corpus); utterances without one keep theirs.

        Args:
            texts: Utterance id -> text.
            source: Where the texts come from (recorded in :attr:`text_source`, said in the report).

        Returns:
            A new corpus (its fingerprint covers the new texts, so nothing stored from other texts is reused).
        """
        from dataclasses import replace

        utts = tuple(replace(u, text=texts[u.id]) if u.id in texts else u for u in self.utterances)
        return Corpus(self.name, self.root, utts, self.labels, text_source=source, splits=self.splits)

    def label_index(self, label: str) -> int:
        """Class index of a label."""
        return self.labels.index(label)

    def group_names(self) -> tuple[str, ...]:
        """The groupings any utterance has a group in (``("sex",)`` for IEMOCAP), sorted."""
        return tuple(sorted({name for u in self.utterances for name in u.groups}, key=_natural_key))

    def groups(self, name: str) -> dict[str, str]:
        """Each utterance's group in one grouping.

        Args:
            name: A grouping (``sex``); ``group:NAME`` as a manifest's column names it is read as ``NAME``.

        Returns:
            ``utterance id -> group`` for the utterances that have one (a manifest row may leave it empty).

        Raises:
            DataError: No utterance has a group in that grouping (names the corpus's groupings).
        """
        key = name[len(GROUP_PREFIX):].strip() if name.startswith(GROUP_PREFIX) else name
        out = {u.id: u.groups[key] for u in self.utterances if key in u.groups}
        if not out:
            known = self.group_names()
            has = (f"its groupings are {', '.join(known)}" if known else "it has none (IEMOCAP has sex, a manifest "
                   f"its {GROUP_PREFIX}NAME columns, EmoBox speaker)")
            raise DataError(f"{self.name}: no utterance has a group in {name!r}; {has}")
        return out

    @cached_property
    def fingerprint(self) -> str:
        """A 16-hex-digit hash of everything in the corpus that changes features or labels
        (ids, sessions, speakers, labels, texts, audio paths and sizes); computed once per corpus.

        Groups are left out: they change no vector, label, fold or head, only what the report compares
        (IEMOCAP's ``sex`` comes from the ids, which are in the hash), so a manifest that gains a
        ``group:NAME`` column keeps its store entries."""
        h = hashlib.sha256()
        h.update(json.dumps(list(self.labels)).encode())
        if self.splits is not None:  # absent for a corpus of sessions: its fingerprint is what it always was
            h.update(json.dumps({"splits": dict(sorted(self.splits.items()))}).encode())
        for u in self.utterances:
            audio = ""
            if u.audio is not None:
                try:
                    rel = u.audio.relative_to(self.root)
                except ValueError:
                    rel = u.audio
                size = u.audio.stat().st_size if u.audio.exists() else -1
                audio = f"{rel}:{size}"
            h.update(json.dumps([u.id, u.session, u.speaker, u.label, u.text, audio]).encode())
        return h.hexdigest()[:16]


def fold_title(session: str) -> str:
    """A fold's column title in tables: ``Ses. N`` for a numbered session (IEMOCAP's), else the fold's own name
    (``Fold 1``, ``test``, ``Test1``).

    Args:
        session: The fold's test session (partition) name.

    Returns:
        The title.
    """
    return f"Ses. {session}" if session.isdigit() else session


def fold_noun(sessions: Iterable[str]) -> str:
    """What a corpus's folds are called in sentences: ``sessions`` when every one is a numbered session (the
    paper's leave-one-session-out), else ``folds``.

    Args:
        sessions: The folds' test session names.

    Returns:
        ``sessions`` or ``folds``.
    """
    names = list(sessions)
    return "sessions" if names and all(s.isdigit() for s in names) else "folds"


_QUERY = re.compile(r"\?(?=[A-Za-z_]+=)")


def _spec_options(text: str, *, kind: str, options: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Split the part of a corpus spec after its colon into the folder and its options (``DIR?NAME=VALUE&...``).

    The first ``?`` followed by ``NAME=`` starts the options; a folder that exists as written is taken whole.

    Args:
        text: ``DIR`` or ``DIR?NAME=VALUE[&NAME=VALUE]``.
        kind: The spec's kind (``emobox``), as the messages name it.
        options: The options the kind takes, name -> its form (``audio=ROOT (...)``).

    Returns:
        (DIR, options given).

    Raises:
        DataError: An unknown option, or one without a value.
    """
    m = _QUERY.search(text)
    if m is None or Path(text).expanduser().is_dir():
        return text, {}
    folder, query = text[: m.start()], text[m.end():]
    given: dict[str, str] = {}
    for item in re.split(r"&(?=[A-Za-z_]+=)", query):
        key, _, value = item.partition("=")
        if key not in options:
            raise DataError(f"corpus (--corpus '{kind}:{text}'): unknown option {key!r} after '?'; "
                            f"{kind} takes {', '.join(options.values())}")
        if not value:
            raise DataError(f"corpus (--corpus '{kind}:{text}'): {key}= has no value; write ?{options[key].split(' ')[0]}")
        given[key] = value
    return folder, given


def _natural_key(s: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))


# --------------------------------------------------------------------------------------------
# Label selection (shared by the readers)
# --------------------------------------------------------------------------------------------


def _clean_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """The label policy for a label list: surrounding whitespace is stripped, case is kept."""
    return tuple(str(lab).strip() for lab in labels)


def _clean_merge(merge: Mapping[str, str]) -> dict[str, str]:
    """The label policy for a merge map: surrounding whitespace of both sides is stripped, case is kept."""
    return {str(a).strip(): str(b).strip() for a, b in merge.items()}


def _warn_case_twins(labels: Iterable[str], *, source: str) -> None:
    """Log one warning line (``featcache.data``) naming the labels that differ only in case.

    They stay separate classes: case is part of a label. The line says how to merge them.

    Args:
        labels: The corpus's labels (after merging).
        source: The file or folder they come from, as the line names it.
    """
    groups: dict[str, list[str]] = {}
    for lab in sorted(set(labels)):
        groups.setdefault(lab.casefold(), []).append(lab)
    twins = [g for g in groups.values() if len(g) > 1]
    if not twins:
        return
    named, merges = [], []
    for g in twins:
        names = [repr(x) for x in g]
        named.append(f"{', '.join(names[:-1])} and {names[-1]}")
        target = next((x for x in g if x == x.lower()), g[0])
        merges += [f"{x}={target}" for x in g if x != target]
    log.warning("%s: labels %s differ only in case; they stay separate classes (merge them with --merge %s "
                "if they are one)", source, "; ".join(named), ",".join(merges))


def _warn_unused_merge(merge: Mapping[str, str], vocabulary: Iterable[str], *, source: str) -> None:
    """Log one warning line (``featcache.data``) naming the merge sources no utterance of the corpus has.

    Not an error: a corpus may lack a label (a merge shared by several corpora); a misspelt label is the other
    cause, so the line names the labels the corpus has.

    Args:
        merge: The merge map the user gave (raw label -> kept label).
        vocabulary: The raw labels the corpus's rows have.
        source: The file or folder they come from, as the line names it.
    """
    vocab = set(vocabulary)
    unused = [src for src in merge if src not in vocab]
    if not unused:
        return
    log.warning("%s: --merge %s: no utterance has the label%s %s, so nothing is merged from %s; the corpus has %s",
                source, ",".join(f"{a}={merge[a]}" for a in unused), "s" if len(unused) > 1 else "",
                ", ".join(repr(a) for a in unused), "them" if len(unused) > 1 else "it", ", ".join(sorted(vocab)))


def _select_labels(
    raw: str,
    *,
    labels: Sequence[str],
    merge: Mapping[str, str],
) -> str | None:
    """Map a raw label through the merge map; None when it is not in the label set."""
    lab = merge.get(raw, raw)
    return lab if lab in labels else None


def _check_label_options(
    labels: Sequence[str], merge: Mapping[str, str], vocabulary: Iterable[str], *, source: str
) -> None:
    vocab = set(vocabulary)
    if len(set(labels)) != len(labels) or not labels:
        raise DataError(f"{source}: label set {list(labels)} must be non-empty without repeats")
    targets = vocab | set(merge.values())
    for lab in labels:
        if lab not in targets:
            raise DataError(f"{source}: unknown label {lab!r} in --labels; the corpus has {', '.join(sorted(vocab))}")
    for src in merge:
        if src not in vocab:
            raise DataError(f"{source}: unknown label {src!r} in --merge; the corpus has {', '.join(sorted(vocab))}")


def _label_set(labels: Sequence[str] | None, merge: Mapping[str, str], vocabulary: Iterable[str], *,
               default: Iterable[str], source: str) -> tuple[str, ...]:
    """A reader's label set: the given one, checked against the corpus's raw labels and the merge map, or the
    reader's default (a merge of labels the corpus lacks warned about once).

    Raises:
        DataError: A given label set that is empty, repeats a label, or names a label (or a merge source) the
            corpus lacks.
    """
    if labels is None:
        _warn_unused_merge(merge, vocabulary, source=source)
        return tuple(default)
    labels = _clean_labels(labels)
    _check_label_options(labels, merge, vocabulary, source=source)
    return labels


def _make_corpus(name: str, root: Path, utts: list[Utterance], labels: Sequence[str], *,
                 splits: Mapping[str, str] | None = None) -> Corpus:
    """The corpus of the kept utterances, sorted by id.

    Args:
        name: The corpus's name (its spec).
        root: The folder it lives in.
        utts: The utterances kept.
        labels: The label set, in class-index order.
        splits: A fixed split's partition -> role (:attr:`Corpus.splits`), reduced to the partitions kept
            utterances are in; None for a corpus of sessions.

    Raises:
        DataError: No utterance is kept, or a fixed split keeps no utterance in a train or a test partition.
    """
    if not utts:
        raise DataError(f"{name}: no utterance has one of the labels {list(labels)}; check --labels/--merge")
    utts.sort(key=lambda u: u.id)
    if splits is not None:
        present = {u.session for u in utts}
        unplaced = sorted(present - set(splits), key=_natural_key)
        if unplaced:
            raise DataError(f"{name}: partition {unplaced[0]!r} is none of the split's ({', '.join(splits)}); "
                            "give each utterance train, dev or test")
        splits = {s: role for s, role in sorted(splits.items()) if s in present}
        for role in ("train", "test"):
            if role not in splits.values():
                raise DataError(f"{name}: no utterance kept in a {role} partition (its partitions: "
                                f"{', '.join(sorted(present, key=_natural_key))}); check --labels/--merge")
    return Corpus(name=name, root=root.resolve(), utterances=tuple(utts), labels=tuple(labels), splits=splits)
