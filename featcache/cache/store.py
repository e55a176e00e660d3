"""The feature store: embeddings per (backbone run, fold, variant), complete or absent.

Layout under the store root (default ``./cache``, or ``--cache-dir`` / ``FEATCACHE_CACHE``); every
path in it is named by :class:`~featcache.cache.layout.StoreLayout`, and a :class:`FeatureStore` is one::

    store.json                                  {"backend": "hdf5", "format_version": 1}
    features/<run>/<fold-K|shared>/<variant>-<hash>.h5          complete entries
    features/<run>/<fold-K|shared>/<variant>-<hash>.partial/    an extraction in progress
    features/<run>/<fold-K|shared>/<variant>-<hash>.lock        writers' lock
    features/<run>/<fold-K|shared>/<variant>-<hash>.shards/     shards of an entry extracted by several
                                                                processes (s<size>-<index>.h5), until assembled
    features/<run>/<fold-K|shared>/<variant>-<hash>.h5.damaged  a damaged entry set aside by a rewrite
    models/weight-hashes.json                   backbone weight digests, so big checkpoints are hashed once
    runs/<run-id>/                              fine-tuning runs (featcache.finetune)
    runs/<run-id>.lock                          held while a process trains or finishes the run
    heads/<study-key>/fold-K/seed-S/<model>/    a study's trained heads (featcache.study)
    text-analysis/<spacy-model>-<key>.json      cached POS analyses (featcache.perturb.text_analysis)
    .../.<name>.tmp-<pid>[-<random>]            a write in progress (featcache.cache.atomic), or its
                                                stray when the writer was killed

Converted backbones (the packaged Whisper base) do not belong to a store: every store shares them in
the per-user model cache, :func:`~featcache.cache.layout.model_cache_root` (``$FEATCACHE_MODELS``, else
``$XDG_CACHE_HOME/featcache/models``, else ``~/.cache/featcache/models``).

``<hash>`` is a digest of the entry's *identity*: every setting that changes the numbers (backbone
and a hash of its weights, pooling, input length limits, the variant and its parameters, seeds, the
corpus fingerprint and the exact utterance ids). Asking for another identity therefore names another
file and can never read vectors computed under different settings; the identity is also stored inside
the entry and checked on every read.

Crash safety. An entry is written in two phases: finished batches go to the ``.partial`` directory as
small chunk files, each written under a temporary name and renamed into place; when every utterance is
done, the chunks are assembled in canonical id order into a temporary file that is fsynced and renamed
over the final name. Killing the writer at any moment (``kill -9``) leaves every completed entry intact
and at most a ``.partial`` directory, which a rerun resumes from; the result is identical to an
uninterrupted run. Writers of the same entry take a file lock, so a second writer waits and then finds
the entry complete. :meth:`FeatureStore.clean` removes what killed writers leave behind: ``.partial``
directories and temporary files anywhere in the store; it takes the writers' locks (and reads the pid in
a temporary name), so live work is left alone.

Shards. Several processes (Ray tasks) can extract one entry together: each writes one shard, a
fixed slice of the entry's utterances, as one file in the entry's ``.shards`` folder, under a temporary
name renamed into place (:meth:`FeatureStore.shard_writer`), so a shard is there whole or not at all and
a retried or duplicated shard job writes the same bytes again. :meth:`FeatureStore.assemble_shards`
then feeds every shard to the entry's ordinary writer (lock, resume, atomic commit) and removes the
folder: the committed entry is the one a single writer makes.

Integrity. Every committed entry records its size and a SHA-256 of its bytes in a header, and digests
of its ids, labels, records and vectors with its provenance (:mod:`featcache.cache.integrity`).
:meth:`FeatureStore.has` and :meth:`FeatureStore.open` check the size; an opened :class:`Entry` checks
each dataset against its digest when it first reads it; :meth:`FeatureStore.damage` (what extraction
runs before it skips an entry) and :meth:`FeatureStore.verify` hash every byte. A damaged entry is
never used: reading it raises :class:`~featcache.errors.DamagedError`, and a writer of the same
entry moves it aside (``.h5.damaged``, saying so in one log line) and writes it again. Entries of
older versions, without these records, are still read and checked against what they stored.

Full disks and read-only stores. Reads never create a file (no locks), so a read-only store can be
listed, verified and evaluated; a write that fails for lack of space or permission ends in one
:class:`~featcache.errors.StoreError` line (:func:`featcache.cache.atomic.write_failure`), its
temporary file removed and every complete entry untouched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from featcache import __version__
from featcache.cache.atomic import (
    TMP_MARK,
    atomic_dir,
    atomic_write_bytes,
    atomic_write_text,
    fsync_path,
    pid_alive,
    tmp_owner,
    write_errors_translated,
)
from featcache.cache.backends import FORMAT_VERSION, Block, EntryReader, concat_blocks, get_backend
from featcache.cache.integrity import (
    INTEGRITY_VERSION,
    LEGACY_SIGNATURE,
    data_digests,
    digest_labels,
    digest_strings,
    digest_vectors,
    file_problem,
    quick_problem,
)
from featcache.cache.layout import FEATURES, StoreLayout, model_cache_root, slug
from featcache.errors import DamagedError, StaleEntryError, StoreError

log = logging.getLogger(__name__)

ENV_VAR = "FEATCACHE_CACHE"
DEFAULT_ROOT = Path("cache")
DAMAGED_SUFFIX = ".damaged"
"""Appended to a damaged entry's name when a writer moves it aside."""
SHARDS_SUFFIX = ".shards"
"""Appended to an entry's name for the folder of its shards (:meth:`FeatureStore.shard_writer`)."""


def default_root() -> Path:
    """The store root: ``$FEATCACHE_CACHE`` if set, else ``./cache``."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_ROOT)


def canonical_json(obj: object) -> str:
    """JSON with sorted keys and no whitespace: the form that identities are hashed in."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(obj: object, n: int = 16) -> str:
    """Hex digest of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def ids_digest(ids: Sequence[str]) -> str:
    """Hash of an ordered list of utterance ids."""
    return digest(list(ids))


@dataclass(frozen=True)
class EntryKey:
    """Names one entry.

    Attributes:
        run: Backbone run name (``text-minilm-frozen``); readable, not unique on its own.
        fold: Fold index, or None for entries shared by all folds (frozen backbones).
        variant: Canonical variant spec (``clean``, ``adj``, ``noise:std=0.1``).
        identity: Everything else that changes the numbers (JSON-serialisable).
    """

    run: str
    fold: int | None
    variant: str
    identity: dict = field(default_factory=dict)

    @property
    def full_identity(self) -> dict:
        return {"run": self.run, "fold": self.fold, "variant": self.variant, **self.identity}

    @property
    def hash(self) -> str:
        return digest(self.full_identity, 12)

    @property
    def fold_dir(self) -> str:
        return "shared" if self.fold is None else f"fold-{self.fold}"

    def relpath(self) -> Path:
        return Path(FEATURES) / slug(self.run) / self.fold_dir / f"{slug(self.variant)}-{self.hash}"

    def __str__(self) -> str:
        return f"{self.run}/{self.fold_dir}/{self.variant}"


@dataclass
class EntryInfo:
    """What ``featcache cache ls`` shows about one entry."""

    path: Path
    status: str  # complete | partial | broken
    run: str = ""
    fold: int | None = None
    variant: str = ""
    rows: int = 0
    dim: int = 0
    size_bytes: int = 0
    provenance: dict = field(default_factory=dict)
    problem: str = ""


class Entry:
    """A complete entry, opened once; each dataset is read when first asked for and checked then.

    Every dataset is checked against the digest recorded when the entry was committed the first time
    it is read (:mod:`featcache.cache.integrity`); the vectors are read whole once (faster than
    scattered rows), checked, and served from memory after that. An entry of an older version without
    digests has its vectors checked against the SHA-256 of ids and vectors it stored.

    Attributes:
        key: The key it was opened with.
        provenance: All stored attributes (identity, backbone, variant parameters, version, time).

    Raises:
        DamagedError: (from any read) The data read do not match the recorded digest.
        StoreError: Its digests are of a version this featcache does not know.
    """

    def __init__(self, key: EntryKey, reader: EntryReader, path: Path) -> None:
        self.key = key
        self.path = path
        self._r = reader
        self.provenance = reader.attrs
        self._pos: dict[str, int] | None = None
        self._checked: set[str] = set()
        self._matrix: np.ndarray | None = None
        digests = reader.attrs.get("integrity")
        self._digests = digests if isinstance(digests, dict) else None
        if digests is not None and self._digests is None:
            raise DamagedError(path, "unreadable integrity record")
        if self._digests is not None and self._digests.get("version") != INTEGRITY_VERSION:
            raise StoreError(f"{path}: integrity record version {self._digests.get('version')!r} is not one this "
                             f"featcache knows ({INTEGRITY_VERSION}); upgrade featcache, or use another --cache-dir")

    def _check(self, name: str, compute: Callable[[], str]) -> None:
        """Compare dataset ``name`` with its recorded digest, once (entries without digests: nothing to do)."""
        if name in self._checked:
            return
        if self._digests is not None and compute() != self._digests.get(name):
            raise DamagedError(self.path, f"checksum mismatch in {name}: the file changed after it was written")
        self._checked.add(name)

    @property
    def ids(self) -> list[str]:
        ids = self._r.ids
        self._check("ids", lambda: digest_strings(ids))
        return ids

    @property
    def dim(self) -> int:
        return self._r.shape[1]

    def __len__(self) -> int:
        return self._r.shape[0]

    def _positions(self) -> dict[str, int]:
        if self._pos is None:
            self._pos = {u: i for i, u in enumerate(self.ids)}
        return self._pos

    def _all_vectors(self) -> np.ndarray:
        """Every row, read once and checked (read-only: the same array serves every later call)."""
        if self._matrix is None:
            try:
                matrix = self._r.rows(np.arange(len(self)))
            except Exception as e:  # noqa: BLE001 - a backend failure while reading is damage
                raise DamagedError(self.path, f"unreadable vectors ({type(e).__name__})") from None
            if self._digests is not None:
                self._check("vectors", lambda: digest_vectors(matrix))
            elif "checksum" in self.provenance and self.provenance["checksum"] != _checksum(self.ids, matrix):
                raise DamagedError(self.path, "checksum mismatch: the file changed after it was written")
            matrix.setflags(write=False)
            self._matrix = matrix
        return self._matrix

    def vectors(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """Float32 matrix for ``ids`` (in that order), or every row.

        Args:
            ids: Utterance ids (repeats allowed), or None for every row in stored order.

        Returns:
            A new array for ``ids``; for every row, the entry's own read-only array.

        Raises:
            StoreError: An id is not in the entry.
            DamagedError: The vectors do not match their recorded digest.
        """
        matrix = self._all_vectors()
        if ids is None:
            return matrix
        pos = self._positions()
        try:
            index = np.fromiter((pos[u] for u in ids), dtype=np.int64, count=len(ids))
        except KeyError as e:
            raise StoreError(
                f"{self.path}: utterance {e.args[0]!r} is not in this entry; extract it with `featcache extract`"
            ) from None
        return matrix[index]

    def labels(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """Class indices, aligned like :meth:`vectors`.

        Raises:
            DamagedError: The labels do not match their recorded digest.
        """
        labs = self._r.labels()
        self._check("labels", lambda: digest_labels(labs))
        if ids is None:
            return labs
        pos = self._positions()
        return labs[[pos[u] for u in ids]]

    def records(self) -> dict[str, dict]:
        """Per-utterance perturbation records (what was done to each input).

        Raises:
            DamagedError: The records do not match their recorded digest.
        """
        raw = self._r.records()
        self._check("records", lambda: digest_strings(raw))
        try:
            parsed = json.loads("[" + ",".join(r or "{}" for r in raw) + "]")  # one parse, not one per row
        except ValueError:
            raise DamagedError(self.path, "unreadable records") from None
        return dict(zip(self.ids, parsed))

    def close(self) -> None:
        self._r.close()

    def __enter__(self) -> "Entry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FeatureStore(StoreLayout):
    """A directory of entries behind a named backend; as a :class:`StoreLayout` it names every path in it.

    Args:
        root: Store directory; created on first write.
        backend: Backend name for a new store (default ``hdf5``); an existing store's recorded
            backend is used, and asking for another one is an error.

    Raises:
        StoreError: ``store.json`` is unreadable, names another backend, or a format version this
            featcache does not know (a newer one: upgrade featcache; an older one: extract again into
            a new store).
    """

    def __init__(self, root: str | Path | None = None, *, backend: str | None = None) -> None:
        super().__init__(root if root is not None else default_root())
        meta = self.meta_path
        recorded = None
        if meta.exists():
            try:
                described = json.loads(meta.read_text())
                recorded = described["backend"]
                version = described["format_version"]
            except (ValueError, KeyError, TypeError, OSError):
                raise StoreError(f"{meta}: unreadable store description; restore it or move the store aside") from None
            _check_format_version(meta, version)
        if recorded is not None and backend is not None and recorded != backend:
            raise StoreError(f"{meta}: store uses backend {recorded!r}, not {backend!r}; pick another --cache-dir")
        name = recorded or backend or "hdf5"
        try:
            self.backend = get_backend(name)
        except KeyError:
            raise StoreError(f"{meta}: unknown backend {name!r}; known: hdf5") from None

    # -- paths ---------------------------------------------------------------------------

    def _init_root(self) -> None:
        meta = self.meta_path
        if not meta.exists():
            atomic_write_text(meta, json.dumps({"backend": self.backend.name, "format_version": FORMAT_VERSION}) + "\n")

    def _set_aside(self, path: Path, problem: str) -> Path:
        """Move a damaged entry file aside (``<name>.damaged``, replacing an older one) and say so in one
        log line; the caller holds the entry's lock.

        Returns:
            The new path.
        """
        aside = path.with_name(path.name + DAMAGED_SUFFIX)
        with write_errors_translated(path):
            os.replace(path, aside)
            fsync_path(path.parent)
        log.warning("%s: damaged entry (%s); moved it to %s and writing it again", path, problem, aside.name)
        return aside

    def _file(self, key: EntryKey, suffix: str) -> Path:
        # appended, not Path.with_suffix: variant names hold dots ("asr-0.2") that are not suffixes
        rel = key.relpath()
        return self.root / rel.parent / f"{rel.name}{suffix}"

    def path(self, key: EntryKey) -> Path:
        """Final path of an entry."""
        return self._file(key, self.backend.suffix)

    def _partial_dir(self, key: EntryKey) -> Path:
        return self._file(key, ".partial")

    def _lock_path(self, key: EntryKey) -> Path:
        return self._file(key, ".lock")

    def shards_dir(self, key: EntryKey) -> Path:
        """The folder of an entry's shards (see the module docstring)."""
        return self._file(key, SHARDS_SUFFIX)

    def shard_path(self, key: EntryKey, *, index: int, size: int) -> Path:
        """Path of shard ``index`` of ``size`` utterances (the size is in the name, so shards of another
        partition are never taken for these)."""
        return self.shards_dir(key) / f"s{size}-{index:05d}{self.backend.suffix}"

    def read_shard(self, key: EntryKey, *, index: int, ids: Sequence[str]) -> tuple[Block, dict] | None:
        """A stored shard holding exactly ``ids`` and its provenance, or None when it is absent or does not
        read (a shard is written whole or not at all, so that means it was never finished)."""
        path = self.shard_path(key, index=index, size=len(ids))
        if not path.is_file():
            return None
        try:
            attrs = self.backend.chunk_attrs(path)
            block = self.backend.read_chunk(path)
        except Exception:  # noqa: BLE001 - any backend failure: treat it as never written
            return None
        if attrs.get("identity") != key.full_identity or sorted(block.ids) != sorted(ids):
            return None
        provenance = attrs.get("provenance")
        return block, provenance if isinstance(provenance, dict) else {}

    def has_shard(self, key: EntryKey, *, index: int, ids: Sequence[str]) -> bool:
        """Whether shard ``index`` holding exactly ``ids`` is stored and reads."""
        return self.read_shard(key, index=index, ids=ids) is not None

    def shard_writer(self, key: EntryKey, *, index: int, ids: Sequence[str], provenance: dict) -> "ShardWriter":
        """A context manager that writes one shard of an entry; it has the interface of :meth:`writer`
        (``complete``, ``pending``, ``add``, ...), keeps the shard's rows in memory and writes the shard
        file once, atomically, when the block ends without an error.

        Args:
            key: The entry.
            index: The shard's index among the entry's shards.
            ids: The shard's utterance ids.
            provenance: The entry's provenance (stored with the shard; the assembled entry gets it).
        """
        return ShardWriter(self, key, index=index, ids=ids, provenance=provenance)

    def assemble_shards(self, key: EntryKey, *, shards: Sequence[Sequence[str]], lock_timeout: float = -1) -> str:
        """Commit an entry from its stored shards through the entry's writer (lock, resume, atomic rename),
        then remove the shards.

        Args:
            key: The entry.
            shards: Each shard's ids, in shard order (their union is the entry's ids).
            lock_timeout: Seconds to wait for another writer of the entry (-1: forever).

        Returns:
            The writer's status: ``written``, ``resumed``, ``replaced`` (a damaged entry set aside) or
            ``skipped`` (the entry was already complete).

        Raises:
            StoreError: A shard is missing (names the first), or the store's writes fail (one line).
        """
        ids = [u for part in shards for u in part]
        if self.has(key) and not self.damage(key):
            self._drop_shards(key)
            return "skipped"
        found = []
        for i, part in enumerate(shards):
            got = self.read_shard(key, index=i, ids=part)
            if got is None:
                raise StoreError(f"{self.shard_path(key, index=i, size=len(part))}: shard {i} of {key} is not "
                                 "stored; extract it first")
            found.append(got)
        with self.writer(key, ids=ids, provenance=found[0][1], lock_timeout=lock_timeout) as w:
            status = "skipped" if w.complete else "replaced" if w.replaced else "resumed" if w.n_done else "written"
            for block, _ in found:
                if w.complete:
                    break
                pending = set(w.pending)
                keep = [i for i, u in enumerate(block.ids) if u in pending]
                if keep:
                    w.add([block.ids[i] for i in keep], block.vectors[keep], labels=block.labels[keep],
                          records=[json.loads(block.records[i]) if block.records[i] else None for i in keep])
        self._drop_shards(key)
        return status

    def _drop_shards(self, key: EntryKey) -> None:
        folder = self.shards_dir(key)
        if folder.is_dir():
            with write_errors_translated(folder):
                shutil.rmtree(folder, ignore_errors=True)

    # -- queries -------------------------------------------------------------------------

    def has(self, key: EntryKey) -> bool:
        """Whether a complete entry with exactly this identity is stored, and its size is the one
        recorded when it was written (a stat and a 512-byte read; :meth:`damage` also hashes it)."""
        path = self.path(key)
        return path.is_file() and not self._quick_problem(path)

    def _quick_problem(self, path: Path) -> str:
        """What the header and size show about an entry file ('' when nothing); an older version's
        entry, without a header, is opened instead (HDF5 refuses a truncated file)."""
        problem = quick_problem(path)
        if problem or not _is_legacy(path):
            return problem
        try:
            self.backend.open_entry(path).close()
        except Exception as e:  # noqa: BLE001 - any backend failure is a broken file
            return f"cannot open ({type(e).__name__})"
        return ""

    def damage(self, key: EntryKey) -> str:
        """Why the stored entry must not be used: '' when it is intact (or not stored at all).

        The full check that extraction runs before it skips an entry: the size and SHA-256 recorded in
        the header (every byte is read), then the stored identity. An older version's entry, without a
        header, gets :meth:`verify`'s checks instead (its ids+vectors checksum).

        Args:
            key: The entry.

        Returns:
            ``''`` or the problem (``truncated: ...``, ``checksum mismatch ...``, ``stored identity
            differs ...``).
        """
        path = self.path(key)
        if not path.is_file():
            return ""
        problem = file_problem(path) if not _is_legacy(path) else self._check(path)
        if problem:
            return problem
        try:
            reader = self.backend.open_entry(path)
        except Exception as e:  # noqa: BLE001
            return f"cannot open ({type(e).__name__})"
        try:
            stored = reader.attrs.get("identity")
        finally:
            reader.close()
        if stored != key.full_identity:
            diff = _diff_keys(stored if isinstance(stored, dict) else {}, key.full_identity)
            return f"stored identity differs ({diff})"
        return ""

    def open(self, key: EntryKey) -> Entry:
        """Open a complete entry; its size is checked now, each dataset when it is first read.

        Raises:
            StoreError: The entry is absent (names the command that makes it).
            DamagedError: Its size differs from the recorded one, or it cannot be opened.
            StaleEntryError: The stored identity differs from the key's.
        """
        path = self.path(key)
        if not path.is_file():
            state = "is incomplete (an extraction was interrupted)" if self._partial_dir(key).exists() else "is not stored"
            raise StoreError(f"{path}: entry {key} {state}; run `featcache extract` for it")
        try:
            reader = self.backend.open_entry(path)
        except Exception as e:  # noqa: BLE001 - any backend failure is a broken file
            raise DamagedError(path, self._quick_problem(path) or f"cannot open ({type(e).__name__})") from None
        try:
            stored = reader.attrs.get("identity")
            if stored != key.full_identity:
                diff = _diff_keys(stored if isinstance(stored, dict) else {}, key.full_identity)
                raise StaleEntryError(
                    f"{path}: stored provenance differs from the request ({diff}); delete it and extract again"
                )
            problem = quick_problem(path)
            if problem:
                raise DamagedError(path, problem)
            return Entry(key, reader, path)
        except BaseException:
            reader.close()
            raise

    def writer(
        self,
        key: EntryKey,
        *,
        ids: Sequence[str],
        provenance: dict | None = None,
        lock_timeout: float = -1,
    ) -> "EntryWriter":
        """A context manager that writes (or resumes) one entry.

        Args:
            key: The entry.
            ids: Every utterance id the entry will hold; rows are stored in sorted id order.
            provenance: Extra attributes to store (backbone name, variant parameters, ...).
            lock_timeout: Seconds to wait for another writer of the same entry (-1: forever).

        Returns:
            An :class:`EntryWriter`; ``writer.complete`` is already True when the entry exists.
        """
        return EntryWriter(self, key, ids=ids, provenance=provenance or {}, lock_timeout=lock_timeout)

    # -- listing and checking ------------------------------------------------------------

    def iter_entries(self) -> Iterator[EntryInfo]:
        """Every entry under the root: complete, partial (interrupted) or broken."""
        feats = self.features_dir
        if not feats.is_dir():
            return
        for p in sorted(feats.rglob("*")):
            if p.is_file() and p.suffix == self.backend.suffix and not p.parts[-2].endswith((".partial", SHARDS_SUFFIX)):
                yield self._info(p)
            elif p.is_dir() and p.suffix == ".partial":
                yield self._partial_info(p)
            elif p.is_dir() and p.suffix == SHARDS_SUFFIX:
                yield self._shards_info(p)

    def _info(self, path: Path) -> EntryInfo:
        info = EntryInfo(path=path, status="complete", size_bytes=path.stat().st_size)
        try:
            r = self.backend.open_entry(path)
        except Exception as e:  # noqa: BLE001
            info.status, info.problem = "broken", f"cannot open ({quick_problem(path) or type(e).__name__})"
            return info
        try:
            ident = r.attrs.get("identity", {})
            info.provenance = dict(r.attrs)
            info.run, info.fold, info.variant = ident.get("run", ""), ident.get("fold"), ident.get("variant", "")
            info.rows, info.dim = r.shape
        except Exception as e:  # noqa: BLE001
            info.status, info.problem = "broken", f"unreadable ({type(e).__name__})"
        finally:
            r.close()
        return info

    def _partial_info(self, path: Path) -> EntryInfo:
        info = EntryInfo(path=path, status="partial")
        try:
            meta = json.loads((path / "meta.json").read_text())
            ident = meta["identity"]
            info.run, info.fold, info.variant = ident["run"], ident["fold"], ident["variant"]
            chunks = list(path.glob(f"chunk-*{self.backend.suffix}"))
            info.size_bytes = sum(c.stat().st_size for c in chunks)
            info.problem = f"{len(chunks)} chunk(s) of {meta['n_ids']} ids' extraction; rerun to resume"
        except (OSError, ValueError, KeyError):
            info.problem = "interrupted before its first chunk; rerun to resume"
        return info

    def _shards_info(self, path: Path) -> EntryInfo:
        shards = sorted(path.glob(f"s*{self.backend.suffix}"))
        info = EntryInfo(path=path, status="partial", size_bytes=sum(p.stat().st_size for p in shards),
                         problem=f"{len(shards)} shard(s) of a distributed extraction; rerun to finish it")
        if shards:
            try:
                ident = self.backend.chunk_attrs(shards[0]).get("identity", {})
                info.run, info.fold, info.variant = ident["run"], ident["fold"], ident["variant"]
            except Exception:  # noqa: BLE001 - a listing shows what it can
                pass
        return info

    def verify(self) -> list[EntryInfo]:
        """Check every entry: size and SHA-256 of every byte, opens, shapes agree, vectors finite, every
        recorded digest matches.

        Returns:
            All entries, with ``status`` set to ``broken`` and ``problem`` filled for the bad ones.
        """
        out = []
        for info in self.iter_entries():
            if info.status == "complete":
                problem = self._check(info.path)
                if problem:
                    info.status, info.problem = "broken", problem
            out.append(info)
        return out

    def _check(self, path: Path) -> str:
        problem = file_problem(path)
        if problem:
            return problem if problem.startswith("checksum") else f"cannot open ({problem})"
        try:
            r = self.backend.open_entry(path)
        except Exception as e:  # noqa: BLE001
            return f"cannot open ({type(e).__name__})"
        try:
            attrs = r.attrs
            if attrs.get("complete") is not True:
                return "not marked complete"
            n, d = r.shape
            ids = r.ids
            if len(ids) != n or len(r.labels()) != n or len(r.records()) != n:
                return "ids, labels, records and vectors disagree in length"
            if len(set(ids)) != n:
                return "duplicate ids"
            vec = r.rows(np.arange(n))
            if not np.isfinite(vec).all():
                return "non-finite values in vectors"
            if "checksum" in attrs and attrs["checksum"] != _checksum(ids, vec):  # (older entries may lack it)
                return "checksum mismatch: the file changed after it was written"
            digests = attrs.get("integrity")
            if digests is not None:
                ours = data_digests(ids=ids, labels=r.labels(), records=r.records(), vectors=vec)
                if digests != ours:
                    bad = [k for k in ours if not isinstance(digests, dict) or digests.get(k) != ours[k]]
                    return f"checksum mismatch in {', '.join(bad)}: the file changed after it was written"
            if attrs.get("identity", {}).get("run") is None:
                return "no identity recorded"
        except Exception as e:  # noqa: BLE001
            return f"unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        finally:
            r.close()
        return ""

    # -- cleaning ------------------------------------------------------------------------

    def clean(self, *, dry_run: bool, on_skip: Callable[[Path, str], None] | None = None) -> list[Path]:
        """Remove what interrupted work left behind; complete entries, runs, heads and analyses stay.

        That is every ``.partial`` directory (an interrupted extraction; a rerun would resume it), every
        ``.shards`` folder (an interrupted distributed extraction; a rerun would reuse its shards), every
        temporary file or folder of a killed writer (a name holding ``.tmp-``, or ending in ``.tmp`` as
        older versions named them) in the store root and its ``features/``, ``models/``, ``runs/``,
        ``heads/`` and ``text-analysis/`` folders, every damaged entry a writer set aside
        (``.damaged``), and the temporary folders of killed conversions in the per-user model cache
        (:func:`~featcache.cache.layout.model_cache_root`).

        Live work is left alone: a ``.partial`` directory is removed only while holding its entry's
        writer lock (tried without waiting), a ``.shards`` folder only when no running process is writing
        a shard into it (a job on another machine is not seen; its assembly then extracts the shard
        again), and a temporary name whose process id belongs to a running
        process is kept; each one left is passed to ``on_skip``.

        Args:
            dry_run: Only list what would be removed.
            on_skip: Called with each path left alone and the reason.

        Returns:
            The removed (or, with ``dry_run``, removable) paths: partial extractions first, then
            temporary files in path order, then the model cache's; nothing inside a listed folder is
            listed again.

        Raises:
            StoreError: The store is read-only (one line).
        """
        skip = on_skip or (lambda path, why: None)
        found: list[Path] = []
        kept: list[Path] = []
        locks = []
        try:
            for info in self.iter_entries():
                if info.status != "partial":
                    continue
                if info.path.suffix == SHARDS_SUFFIX:
                    live = [p for p in info.path.iterdir() if (pid := tmp_owner(p.name)) is not None and pid_alive(pid)]
                    if live:
                        kept.append(info.path)
                        skip(info.path, f"process {tmp_owner(live[0].name)} is writing a shard")
                    else:
                        found.append(info.path)
                    continue
                lock = self._try_lock(info.path.with_name(info.path.name[: -len(".partial")] + ".lock"),
                                      dry_run=dry_run)
                if lock is False:
                    kept.append(info.path)
                    skip(info.path, "an extraction is writing it")
                    continue
                if lock is not None:
                    locks.append(lock)
                found.append(info.path)
            strays: list[Path] = []
            if self.root.is_dir():
                strays += [p for p in self.root.iterdir() if _is_tmp_name(p.name)]
            for folder in self.folders():
                if folder.is_dir():
                    strays += [p for p in folder.rglob("*") if _is_tmp_name(p.name) or
                               (p.name.endswith(DAMAGED_SUFFIX) and p.is_file())]
            models = model_cache_root()
            cached = sorted(p for p in models.iterdir() if TMP_MARK in p.name) if models.is_dir() else []
            for path in [*sorted(strays), *cached]:
                if any(path.is_relative_to(done) for done in (*found, *kept)):
                    continue
                pid = tmp_owner(path.name)
                if pid is not None and pid_alive(pid):
                    kept.append(path)
                    skip(path, f"process {pid} is writing it")
                    continue
                if path in cached and pid is None:
                    continue  # the model cache holds only what featcache writes; leave unknown names
                found.append(path)
            if not dry_run:
                for path in found:
                    _remove(path)
        finally:
            for lock in locks:
                lock.release()
        return found

    def _try_lock(self, lock_path: Path, *, dry_run: bool):  # type: ignore[no-untyped-def]
        """Take a writer lock without waiting: the held lock, None when there is nothing to lock (no
        lock file in a dry run, or a read-only store in a dry run: no writer can be there either), or
        False when another process holds it.

        Raises:
            StoreError: The store is read-only and this is not a dry run.
        """
        from filelock import FileLock, Timeout

        if dry_run and not lock_path.exists():
            return None
        lock = FileLock(str(lock_path), timeout=0)
        try:
            with write_errors_translated(lock_path):
                lock.acquire()
        except Timeout:
            return False
        except StoreError:
            if dry_run:
                return None
            raise
        return lock


def _remove(path: Path) -> None:
    """Remove a file or folder tree (already gone is fine; a read-only store is one line)."""
    with write_errors_translated(path):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            pass


def _is_legacy(path: Path) -> bool:
    """Whether an entry file was written before entries had a header (it starts with the HDF5 signature)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(LEGACY_SIGNATURE)) == LEGACY_SIGNATURE
    except OSError:
        return False


def _check_format_version(meta: Path, version: object) -> None:
    """Refuse a store whose ``store.json`` names a format this featcache does not read.

    Raises:
        StoreError: Not an integer, newer (upgrade featcache) or older (extract again into a new store).
    """
    if not isinstance(version, int) or isinstance(version, bool):
        raise StoreError(f"{meta}: unreadable store description (format_version {version!r}); "
                         "restore it or move the store aside")
    if version > FORMAT_VERSION:
        raise StoreError(f"{meta}: store format_version {version} is newer than this featcache {__version__} "
                         f"reads (up to {FORMAT_VERSION}); upgrade featcache, or use another --cache-dir")
    if version < FORMAT_VERSION:
        raise StoreError(f"{meta}: store format_version {version} is older than this featcache reads "
                         f"({FORMAT_VERSION}) and cannot be converted; move the store aside and extract again "
                         "into a new --cache-dir")


def _is_tmp_name(name: str) -> bool:
    """Whether a file name is a temporary one (:data:`TMP_MARK`, or the ``.tmp`` suffix of older versions)."""
    return TMP_MARK in name or name.endswith(".tmp")


def _checksum(ids: Sequence[str], vectors: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update("\n".join(ids).encode())
    h.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return h.hexdigest()


def _diff_keys(a: dict, b: dict) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    shown = ", ".join(f"{k}: stored {a.get(k)!r} vs asked {b.get(k)!r}" for k in keys[:2])
    return shown + (f" and {len(keys) - 2} more" if len(keys) > 2 else "")


def batch_block(key: EntryKey, pending: Sequence[str], ids: Sequence[str], vectors: np.ndarray, *,
                labels: Sequence[int] | np.ndarray | None, records: Sequence[dict | None] | None, part: str) -> Block:
    """One finished batch checked against what its writer still expects, as a :class:`Block`.

    Args:
        key: The entry (named in errors).
        pending: Ids the writer has not received yet.
        ids: The batch's ids.
        vectors: One row per id.
        labels: Class index per id (-1 when None).
        records: The variant's record per id (JSON-encoded; empty when None).
        part: What the writer writes, for the error (``this entry``, ``shard 3``).

    Returns:
        The block.

    Raises:
        StoreError: Unknown or repeated ids, or a shape mismatch.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise StoreError(f"{key}: got {vectors.shape} vectors for {len(ids)} ids")
    waiting = set(pending)
    bad = [u for u in ids if u not in waiting]
    if bad:
        raise StoreError(f"{key}: id {bad[0]!r} is already written or not part of {part}")
    return Block(
        ids=list(ids),
        labels=np.asarray(labels if labels is not None else [-1] * len(ids), dtype=np.int64),
        vectors=vectors,
        records=[json.dumps(r, sort_keys=True) if r else "" for r in (records or [None] * len(ids))],
    )


class EntryWriter:
    """Writes one entry batch by batch; see the module docstring for the crash-safety protocol.

    Use as a context manager::

        with store.writer(key, ids=ids, provenance=prov) as w:
            for batch_ids in batches(w.pending):
                w.add(batch_ids, vectors, labels=labels, records=records)
        # complete here: the entry was renamed into place

    Attributes:
        complete: True when the entry exists (written now or found complete on entry).
        pending: Ids not yet written, in the order given.
        replaced: The problem of a damaged entry found on entry and moved aside ('' when none).

    Raises:
        StoreError: (on entry) Another process holds the lock past ``lock_timeout``, or the store is
            read-only; (from any write) the disk is full (one line; complete entries are untouched).
    """

    def __init__(
        self, store: FeatureStore, key: EntryKey, *, ids: Sequence[str], provenance: dict, lock_timeout: float
    ) -> None:
        if len(set(ids)) != len(ids):
            raise StoreError(f"{key}: duplicate utterance ids given to the writer")
        self.store, self.key = store, key
        self.ids = list(ids)
        self.provenance = provenance
        self.lock_timeout = lock_timeout
        self.final = store.path(key)
        self.partial = store._partial_dir(key)
        self.complete = False
        self._done: set[str] = set()
        self._n_chunks = 0
        self._lock = None
        self.pending: list[str] = []
        self._made: list[Path] = []  # the .partial folder and .lock file this writer created, if it did
        self._added = 0
        self.replaced = ""

    def __enter__(self) -> "EntryWriter":
        from filelock import FileLock, Timeout

        with write_errors_translated(self.final):
            self.store._init_root()
            self.final.parent.mkdir(parents=True, exist_ok=True)
            lock_path = self.store._lock_path(self.key)
            made_lock = not lock_path.exists()
            lock = FileLock(str(lock_path), timeout=self.lock_timeout)
            try:
                lock.acquire()
            except Timeout:
                raise StoreError(f"{self.final}: another process is writing this entry; wait for it or retry") from None
            self._lock = lock
        try:
            if self.final.exists():
                self.replaced = self.store.damage(self.key)
                if not self.replaced:
                    self.complete = True
                    self.pending = []
                    return self
                self.store._set_aside(self.final, self.replaced)
            made_partial = not self.partial.is_dir()
            with write_errors_translated(self.partial):
                self._resume()
            self._made = [p for p, made in ((self.partial, made_partial), (lock_path, made_lock)) if made]
        except BaseException:
            self._lock.release()
            raise
        return self

    def _resume(self) -> None:
        backend = self.store.backend
        meta_path = self.partial / "meta.json"
        meta = {"identity": self.key.full_identity, "ids_digest": ids_digest(sorted(self.ids)), "n_ids": len(self.ids)}
        if self.partial.is_dir():
            try:
                old = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                old = None
            if old != meta:
                shutil.rmtree(self.partial)
        parent = self.final.parent
        for pattern in (f".{self.final.name}{TMP_MARK}*", f"{self.final.name}{TMP_MARK}*"):  # (older name)
            for stale in parent.glob(pattern):
                stale.unlink(missing_ok=True)  # a finalisation killed before its rename
        for stale in parent.glob(f"{self.partial.name}{TMP_MARK}*"):  # an older version's killed start
            shutil.rmtree(stale, ignore_errors=True)
        for stale in parent.glob(f".{self.partial.name}{TMP_MARK}*"):
            shutil.rmtree(stale, ignore_errors=True)
        if not self.partial.is_dir():
            with atomic_dir(self.partial) as tmp:
                (tmp / "meta.json").write_text(json.dumps(meta))
        wanted = set(self.ids)
        for chunk in sorted(self.partial.glob(f"chunk-*{backend.suffix}")):
            try:
                block = backend.read_chunk(chunk)
            except Exception:  # noqa: BLE001 - cannot happen with atomic renames, but never trust it
                chunk.unlink(missing_ok=True)
                continue
            if not set(block.ids) <= wanted:
                chunk.unlink()
                continue
            self._done.update(block.ids)
            self._n_chunks = max(self._n_chunks, int(chunk.stem.split("-")[1]) + 1)
        for leftover in self.partial.iterdir():
            if _is_tmp_name(leftover.name):  # a chunk write killed before its rename
                leftover.unlink(missing_ok=True)
        self.pending = [u for u in self.ids if u not in self._done]

    @property
    def n_done(self) -> int:
        return len(self._done)

    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        *,
        labels: Sequence[int] | np.ndarray | None = None,
        records: Sequence[dict | None] | None = None,
    ) -> None:
        """Write one finished batch durably (it survives a crash from now on).

        Raises:
            StoreError: Unknown or repeated ids, or a shape mismatch.
        """
        if self.complete:
            raise StoreError(f"{self.final}: entry is already complete")
        block = batch_block(self.key, self.pending, ids, vectors, labels=labels, records=records, part="this entry")
        name = f"chunk-{self._n_chunks:06d}{self.store.backend.suffix}"
        atomic_write_bytes(self.partial / name, self.store.backend.chunk_bytes(block))
        self._n_chunks += 1
        self._added += 1
        self._done.update(ids)
        done = set(ids)
        self.pending = [u for u in self.pending if u not in done]

    def finalize(self) -> None:
        """Assemble the chunks in sorted id order and rename the entry into place.

        Raises:
            StoreError: Some ids were never written.
        """
        if self.complete:
            return
        if self.pending:
            raise StoreError(f"{self.key}: {len(self.pending)} utterance(s) not written yet (e.g. {self.pending[0]!r})")
        backend = self.store.backend
        blocks = [backend.read_chunk(c) for c in sorted(self.partial.glob(f"chunk-*{backend.suffix}"))]
        block = concat_blocks(blocks)
        order = np.argsort(np.array(block.ids, dtype=object), kind="stable") if block.ids else np.zeros(0, np.int64)
        block = Block(
            ids=[block.ids[i] for i in order],
            labels=block.labels[order],
            vectors=block.vectors[order] if len(order) else block.vectors.reshape(0, 0),
            records=[block.records[i] for i in order],
        )
        attrs = {
            **self.provenance,
            "identity": self.key.full_identity,
            "complete": True,
            "backend": backend.name,
            "format_version": FORMAT_VERSION,
            "featcache_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "n": len(block.ids),
            "dim": int(block.vectors.shape[1]) if block.vectors.ndim == 2 else 0,
            "checksum": _checksum(block.ids, block.vectors),
            "integrity": data_digests(ids=block.ids, labels=block.labels, records=block.records,
                                      vectors=block.vectors),
        }
        atomic_write_bytes(self.final, *backend.entry_parts(block, attrs))
        fsync_path(self.final.parent)  # the rename is durable before the chunks go
        shutil.rmtree(self.partial, ignore_errors=True)
        self.complete = True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None and not self.complete:
                self.finalize()
        finally:
            if exc_type is not None and not self.complete and not self._added:
                self._undo_start()
            if self._lock is not None:
                self._lock.release()

    def _undo_start(self) -> None:
        """After an error before the first batch: remove the ``.partial`` folder and ``.lock`` file this
        writer created (still holding the lock; a waiting writer notices the unlinked lock file and
        retries), so that a failed start leaves the store as it was."""
        for path in self._made:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


class ShardWriter:
    """Writes one shard of an entry (:meth:`FeatureStore.shard_writer`): rows are kept in memory and the
    shard file is written once, atomically, when the ``with`` block ends without an error; a shard already
    stored is ``complete`` on entry. The same interface as :class:`EntryWriter`, so extraction writes either.

    Attributes:
        complete: True when the shard is stored (found on entry, or written now).
        pending: Ids not yet added.
        final: The shard file.

    Raises:
        StoreError: (from ``add``) unknown or repeated ids, a shape mismatch; (on exit) ids never added, a
            full disk or a read-only store (one line).
    """

    replaced = ""
    n_done = 0

    def __init__(self, store: FeatureStore, key: EntryKey, *, index: int, ids: Sequence[str], provenance: dict) -> None:
        if len(set(ids)) != len(ids):
            raise StoreError(f"{key}: duplicate utterance ids given to the shard writer")
        self.store, self.key, self.index = store, key, index
        self.ids = list(ids)
        self.provenance = provenance
        self.final = store.shard_path(key, index=index, size=len(self.ids))
        self.complete = False
        self.pending: list[str] = []
        self._blocks: list[Block] = []

    def __enter__(self) -> "ShardWriter":
        self.complete = self.store.has_shard(self.key, index=self.index, ids=self.ids)
        self.pending = [] if self.complete else list(self.ids)
        return self

    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        *,
        labels: Sequence[int] | np.ndarray | None = None,
        records: Sequence[dict | None] | None = None,
    ) -> None:
        """Keep one finished batch (written with the shard at the end of the ``with`` block).

        Raises:
            StoreError: Unknown or repeated ids, or a shape mismatch.
        """
        self._blocks.append(batch_block(self.key, self.pending, ids, vectors, labels=labels, records=records,
                                        part=f"shard {self.index}"))
        done = set(ids)
        self.pending = [u for u in self.pending if u not in done]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None or self.complete:
            return
        if self.pending:
            raise StoreError(f"{self.key}: {len(self.pending)} utterance(s) of shard {self.index} not written "
                             f"(e.g. {self.pending[0]!r})")
        attrs = {"identity": self.key.full_identity, "provenance": self.provenance, "shard": self.index}
        with write_errors_translated(self.final):
            self.store._init_root()
            self.final.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.final, self.store.backend.chunk_bytes(concat_blocks(self._blocks), attrs))
        self.complete = True
