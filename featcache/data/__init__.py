"""Corpora: one `Utterance` record and the sources that produce them.

Four sources sit behind :func:`load_corpus`:

* ``iemocap:DIR`` reads the IEMOCAP release layout (``SessionN/dialog/EmoEvaluation``,
  ``SessionN/dialog/transcriptions``, ``SessionN/sentences/wav``);
* ``manifest:FILE`` reads a CSV or JSONL manifest (``id, label, session`` or ``fold``, optional
  ``text``, ``audio``, ``speaker``, ``duration``) for any other corpus;
* ``emobox:DIR`` reads an EmoBox dataset folder (``data/<dataset>``: ``fold_K/<dataset>_{train,test}_fold_K.jsonl``,
  ``label_map.json``) with its published folds; ``emobox:DIR?audio=ROOT`` names where its wav paths start;
* ``msp-podcast:DIR`` reads an MSP-Podcast release (``Labels/labels_consensus.csv``, ``Audios/``,
  ``Transcripts/``) with its partitions as a fixed split; ``meld:DIR`` reads MELD (its three CSVs, the clips);
  ``ravdess:DIR`` and ``crema-d:DIR`` read those corpora by their file names, in folds of actors;
* the embedded demo corpus, written by ``featcache demo-data DIR`` in the IEMOCAP layout and read
  back with the IEMOCAP reader.

Every problem with the input raises :class:`~featcache.errors.DataError` with a one-line message that
names the file (and line) and what to do about it.

Modules: :mod:`~featcache.data.corpus` (the records and the label checks the readers share),
:mod:`~featcache.data.iemocap` (the release reader), :mod:`~featcache.data.manifest` (CSV/JSONL),
:mod:`~featcache.data.emobox` (EmoBox folders),
:mod:`~featcache.data.msp_podcast` and :mod:`~featcache.data.meld` (their releases),
:mod:`~featcache.data.filenames` (RAVDESS, CREMA-D),
:mod:`~featcache.data.specs` (:func:`load_corpus`), :mod:`~featcache.data.audio` (:func:`load_audio`),
:mod:`~featcache.data.stats` (:func:`corpus_stats`). Every public name is importable from here.
"""

from __future__ import annotations

from featcache.data.audio import SAMPLE_RATE, audio_duration, load_audio
from featcache.data.corpus import PAPER_LABELS, PAPER_MERGE, Corpus, Utterance
from featcache.data.emobox import read_emobox
from featcache.data.filenames import read_crema_d, read_ravdess
from featcache.data.iemocap import IEMOCAP_VOCABULARY, read_iemocap
from featcache.data.manifest import read_manifest
from featcache.data.meld import read_meld
from featcache.data.msp_podcast import read_msp_podcast
from featcache.data.specs import load_corpus, parse_merge
from featcache.data.stats import CorpusStats, corpus_stats

__all__ = [
    "IEMOCAP_VOCABULARY",
    "PAPER_LABELS",
    "PAPER_MERGE",
    "SAMPLE_RATE",
    "Corpus",
    "CorpusStats",
    "Utterance",
    "audio_duration",
    "corpus_stats",
    "load_audio",
    "load_corpus",
    "parse_merge",
    "read_crema_d",
    "read_emobox",
    "read_iemocap",
    "read_manifest",
    "read_meld",
    "read_msp_podcast",
    "read_ravdess",
]
