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
    transcripts/<recognizer>-<key>.json         cached speech transcripts (featcache.transcribe)
    transcripts/<recognizer>-<key>.json.lock    held while a process transcribes into the file
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

Modules. This one holds :class:`FeatureStore`, the facade (opening, checking and naming entries, the
store's description in ``store.json``); the rest of the work is done by the package's other modules,
one job each: :mod:`~featcache.cache.keys` (:class:`EntryKey`, identity digests, default root),
:mod:`~featcache.cache.entry` (:class:`Entry`, reading), :mod:`~featcache.cache.writers`
(:class:`EntryWriter`, writing and resuming), :mod:`~featcache.cache.shards` (shards and their
assembly), :mod:`~featcache.cache.listing` (listing and verifying) and :mod:`~featcache.cache.clean`
(cleaning). Their names are importable from here as before.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from featcache import __version__
from featcache.cache import clean as _clean
from featcache.cache import listing as _listing
from featcache.cache import shards as _shards
from featcache.cache.atomic import (
    atomic_write_text,
    fsync_path,
    write_errors_translated,
)
from featcache.cache.backends import FORMAT_VERSION, Block, get_backend
from featcache.cache.clean import _remove, _try_lock  # noqa: F401 - importable from here as before
from featcache.cache.entry import Entry
from featcache.cache.integrity import LEGACY_SIGNATURE, file_problem, quick_problem
from featcache.cache.keys import (  # noqa: F401 - ENV_VAR, DEFAULT_ROOT and the private ones: as before
    DAMAGED_SUFFIX,
    DEFAULT_ROOT,
    ENV_VAR,
    SHARDS_SUFFIX,
    EntryKey,
    _checksum,
    _is_tmp_name,
    canonical_json,
    default_root,
    digest,
    ids_digest,
)
from featcache.cache.layout import FEATURES, StoreLayout, model_cache_root, slug  # noqa: F401 - as before
from featcache.cache.listing import EntryInfo, check_entry
from featcache.cache.shards import ShardWriter
from featcache.cache.writers import EntryWriter, batch_block
from featcache.errors import DamagedError, StaleEntryError, StoreError

__all__ = [
    "DAMAGED_SUFFIX",
    "SHARDS_SUFFIX",
    "Entry",
    "EntryInfo",
    "EntryKey",
    "EntryWriter",
    "FeatureStore",
    "ShardWriter",
    "batch_block",
    "canonical_json",
    "default_root",
    "digest",
    "ids_digest",
    "slug",
]

log = logging.getLogger(__name__)


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
        return _shards.read_shard(self, key, index=index, ids=ids)

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
        return _shards.assemble_shards(self, key, shards=shards, lock_timeout=lock_timeout)

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
        problem = file_problem(path) if not _is_legacy(path) else check_entry(self, path)
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
        """Every entry under the root: complete, partial (interrupted) or broken.

        Returns:
            An iterator of :class:`EntryInfo`, in path order (:func:`featcache.cache.listing.iter_entries`).
        """
        return _listing.iter_entries(self)

    def verify(self) -> list[EntryInfo]:
        """Check every entry: size and SHA-256 of every byte, opens, shapes agree, vectors finite, every
        recorded digest matches.

        Returns:
            All entries, with ``status`` set to ``broken`` and ``problem`` filled for the bad ones.
        """
        return _listing.verify(self)

    # -- cleaning ------------------------------------------------------------------------

    def clean(self, *, dry_run: bool, on_skip: Callable[[Path, str], None] | None = None) -> list[Path]:
        """Remove what interrupted work left behind; complete entries, runs, heads and analyses stay.

        That is ``.partial`` and ``.shards`` folders, temporary files of killed writers, damaged entries
        set aside and the model cache's temporary folders; live work is left alone, each one left passed
        to ``on_skip`` (:func:`featcache.cache.clean.clean` says what and when).

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
        return _clean.clean(self, dry_run=dry_run, on_skip=on_skip)


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


def _diff_keys(a: dict, b: dict) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    shown = ", ".join(f"{k}: stored {a.get(k)!r} vs asked {b.get(k)!r}" for k in keys[:2])
    return shown + (f" and {len(keys) - 2} more" if len(keys) > 2 else "")
