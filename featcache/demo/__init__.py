"""The embedded demo corpus: a small synthetic corpus in the IEMOCAP release layout.

``featcache demo-data DIR`` calls :func:`write_demo_corpus`, and the corpus is read back by the
ordinary IEMOCAP reader (:func:`featcache.data.read_iemocap`), so every stage of the pipeline can be
run end to end without the real release.

Layout (as in the release)::

    DIR/SessionN/dialog/EmoEvaluation/<dialog>.txt
    DIR/SessionN/dialog/transcriptions/<dialog>.txt
    DIR/SessionN/sentences/wav/<dialog>/<utterance>.wav      (16 kHz mono 16-bit PCM, 1-9 s)
    DIR/README_DEMO.txt                                       (seed and label table)

Five sessions, two speakers each (``Ses0NF`` and ``Ses0NM``), dialogs ``Ses0NF_impro0K`` and
``Ses0NM_script0K_1`` holding turns of both speakers. Every speaker has ``utterances_per_speaker``
turns labelled ``fru``, ``ang``, ``sad``, ``hap`` or ``exc`` in the per-session proportions of the
IEMOCAP release (the paper's Table 1), plus a few ``neu``, ``xxx`` and ``sur`` turns that the paper's
label filter drops. The table is a function of ``utterances_per_speaker`` only
(:func:`demo_raw_counts`, :func:`demo_counts`); the seed changes words and sounds, never counts.

How emotion is encoded. Each modality alone is informative but imperfect and the two complement
each other, as in speech: words tell valence better, the voice tells arousal better.

* Text comes from sentence templates whose adjective and noun slots carry the emotion (so masking
  adjectives or nouns removes information, masking as many random words removes less); function
  words and verbs are neutral, a few interjections carry a little. Each slot takes a word of the
  utterance's own class, a word shared by all negative classes, a word of another class or a
  neutral word, so ``hap`` is told apart from the negative classes well while ``ang``, ``fru`` and
  ``sad`` are confused among themselves; 35-40% of the utterances have no adjective.
* Audio is the transcript spoken by espeak-ng (:mod:`~featcache.demo.espeak`: the PyPI package
  ``espeakng-loader``, through its shared library), so a speech recogniser hears the words and pitch,
  noise and the other audio attacks act on speech. Speakers differ in voice variant (female or male),
  base pitch, pitch range, rate and recording level. The emotion is in the prosody relative to the
  speaker: F0 level (a few semitones apart and overlapping, so a one-semitone pitch shift moves some
  utterances across a class boundary), F0 range, level and speaking rate: high arousal (``ang``,
  ``hap``) is told apart from ``fru`` and ``sad`` well, ``ang`` from ``hap`` poorly.

``bench/demo_design_check.py`` measures all of this with simple features (bag of words; F0, energy
and rate summaries) in leave-one-session-out cross-validation, with and without the paper's attacks.

Every random draw comes from a numpy Generator seeded by hashing ``seed`` with the name of what is
drawn (an utterance id, a speaker, a dialog), espeak's own draws from a seed drawn there too, and espeak
runs in a fresh child process for each corpus, so the same seed gives byte-identical files (with the
same numpy, soxr and espeak-ng builds; another platform's math library could round a sample
differently).

Modules: :mod:`~featcache.demo.plan` (format, sessions, the label table, seeding, the dialogs' turns),
:mod:`~featcache.demo.text` (the transcriptions), :mod:`~featcache.demo.speech` (the voices and prosody),
:mod:`~featcache.demo.espeak` (the synthesiser),
:mod:`~featcache.demo.writer` (the files, :func:`write_demo_corpus`).
"""

from __future__ import annotations

from featcache.demo.plan import DEMO_FORMAT, DEMO_SESSIONS, demo_counts, demo_raw_counts
from featcache.demo.text import _ADJ, _NOUN  # noqa: F401  (the word pools bench/demo_design_check.py reads)
from featcache.demo.writer import DemoSummary, write_demo_corpus

__all__ = [
    "DEMO_FORMAT",
    "DEMO_SESSIONS",
    "DemoSummary",
    "demo_counts",
    "demo_raw_counts",
    "write_demo_corpus",
]
