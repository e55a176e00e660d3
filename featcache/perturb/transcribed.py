"""``transcribed``: the text a speech recogniser heard, in place of the gold transcription.

The text model is trained as the study says (on gold text) and evaluated on the recogniser's transcript of
the utterance's audio: of the clean audio (``transcribed``), or of the audio as an audio attack left it
(``transcribed:audio=pitch``, what the condition ``transcribed+pitch`` gives the text model: the attack
reaches the text through the recogniser as well as the audio directly). ``window`` pads a clip to a multiple of
that many seconds instead of Whisper's 30 (``transcribed-10s``: 10 s, what the demo uses). The transcripts come from the
store (:func:`featcache.transcribe.transcribe`, decoded once and cached); extraction passes them as
``transcripts=`` (utterance id -> text).

Record: ``text`` (the transcript), ``ref_words`` and ``word_errors`` (its word-level edit distance to the gold
text, so a record says its own word error rate); the utterance counts as changed where the transcript's words
differ from the gold words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from featcache.errors import FeatcacheError
from featcache.perturb.base import DEFAULT_MASK_TOKEN, Param, Record, TextVariant

if TYPE_CHECKING:
    from featcache.perturb.text_analysis import TextAnalysis

RECOGNIZER = "whisper-base"
"""The recogniser a ``transcribed`` variant names by default (the packaged Whisper base)."""


WHISPER_WINDOW = 30.0
"""Seconds of Whisper's own decoding window (every clip padded to it): a longer ``window`` means the same."""


class TranscribedText(TextVariant):
    """Replace the transcription by the recogniser's transcript of the (clean or attacked) audio."""

    kind = "transcribed"
    needs_analysis = False
    #: Whether extraction must pass ``transcripts=`` (utterance id -> text).
    needs_transcripts = True
    params_spec = (
        Param("audio", "str", default="clean", help="audio variant the recogniser hears (clean: the clip as it is)"),
        Param("recognizer", "str", default=RECOGNIZER,
              help="recogniser: whisper-base, a Whisper folder (CTranslate2 or transformers) or a hub name"),
        Param("window", "float", default=None, low=1.0,
              help="seconds a clip is padded to a multiple of (unset or 30: Whisper's own 30 s; 10: faster on "
                   "short clips)"),
    )
    added_params = ("window",)

    def _normalize(self, params: dict[str, Any], *, given: frozenset[str]) -> dict[str, Any]:
        if params["window"] is not None and float(params["window"]) >= WHISPER_WINDOW:  # Whisper's own: unset
            params["window"] = None
        return params
    description = "the speech recogniser's transcript of the audio instead of the gold text"

    @property
    def window(self) -> float | None:
        """Seconds a clip is padded to a multiple of before decoding (``window_seconds`` of
        :func:`featcache.transcribe.transcribe`), or None for the recogniser's own window."""
        window = self._params["window"]
        return None if window is None else float(window)

    @property
    def audio_variant(self) -> str | None:
        """The audio variant the recogniser hears, or None for the clean audio."""
        audio = str(self._params["audio"])
        return None if audio == "clean" else audio

    def draw(  # type: ignore[override]
        self,
        x: str,
        *,
        utt_id: str,
        seed: int,
        analysis: TextAnalysis | None = None,
        mask_token: str | None = DEFAULT_MASK_TOKEN,
        transcripts: Mapping[str, str] | None = None,
    ) -> Record:
        """The transcript of one utterance, and its word errors against ``x`` (the gold text).

        Args:
            x: The gold transcription.
            utt_id: Utterance id.
            seed: Variant seed (the audio attack's, when the recogniser heard one).
            analysis: Unused.
            mask_token: Unused.
            transcripts: Utterance id -> the recogniser's transcript.

        Returns:
            The record.

        Raises:
            FeatcacheError: No transcripts given, or none for this utterance.
        """
        if not isinstance(x, str):
            raise FeatcacheError(f"variant {self.spec!r} replaces text, got {type(x).__name__}")
        if transcripts is None or utt_id not in transcripts:
            raise FeatcacheError(f"variant {self.spec!r}: no transcript of utterance {utt_id!r}; run "
                                 "`featcache transcribe` (extraction passes the store's transcripts)")
        from featcache.perturb.wer import edit_distance, normalize_words

        text = transcripts[utt_id]
        ref, hyp = normalize_words(x), normalize_words(text)
        record = self._header(utt_id=utt_id, seed=seed)
        record.update({"text": text, "ref_words": len(ref), "word_errors": edit_distance(ref, hyp)})
        return record

    def apply(  # type: ignore[override]
        self,
        x: str,
        record: Mapping[str, Any],
        *,
        analysis: TextAnalysis | None = None,
        mask_token: str | None = DEFAULT_MASK_TOKEN,
        transcripts: Mapping[str, str] | None = None,
    ) -> str:
        """The transcript the record holds (no randomness, nothing looked up again)."""
        self._check_record(record)
        return str(record["text"])

    def changed(self, record: Mapping[str, Any] | None) -> bool:
        """Whether the transcript's words differ from the gold words."""
        return bool(record) and int(record.get("word_errors", 0)) > 0

    def _draw(self, text: str, *, rng: np.random.Generator, analysis: TextAnalysis | None) -> Record:
        raise NotImplementedError  # draw is overridden: the record comes from the transcripts
