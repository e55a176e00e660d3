"""``featcache transcribe``: cached speech recognition transcripts of a corpus's audio."""

from __future__ import annotations

from pathlib import Path

import click

from featcache.cli import cli
from featcache.cli.options import CONTEXT, cache_dir_option, corpus_options, load_corpus_from_options
from featcache.perturb.transcribed import WHISPER_WINDOW


@cli.command("transcribe", context_settings=CONTEXT)
@corpus_options
@cache_dir_option
@click.option("--recognizer", default="whisper-base", metavar="whisper-base|DIR|HUB-NAME",
              help="The packaged Whisper base, a Whisper directory (CTranslate2, or transformers: converted once "
                   "into the model cache) or a hub name such as openai/whisper-small.")
@click.option("--language", default="en", metavar="CODE|auto", help="Spoken language, or auto to detect it.")
@click.option("--compute-type", type=click.Choice(["int8", "float32"]), default="int8",
              help="CTranslate2 computation type (part of the cache key).")
@click.option("--workers", type=click.IntRange(min=0), default=0,
              help="Clips decoded side by side, one CPU thread each (0: the usable cores).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=16,
              help="Utterances decoded between two writes of the transcript file (a killed run loses at most one).")
@click.option("--max-length", type=click.IntRange(min=1), default=448, help="Most tokens decoded per utterance.")
@click.option("--window", "window_seconds", type=click.FloatRange(min=1), default=WHISPER_WINDOW, show_default=True,
              help="Pad a clip to the smallest multiple of this many seconds that holds it (at most the "
                   "recogniser's 30 s). 30 is Whisper's own decoding; 10 is several times faster on short clips "
                   "(part of the cache key; docs/benchmarks.md has its word error rate).")
@click.option("--audio-variant", default=None, metavar="NAME",
              help="Transcribe the audio as this audio attack leaves it (pitch, noise): the text "
                   "transcribed+NAME gives the text model.  [default: the clean audio]")
@click.option("--variant-seed", type=int, default=0, help="Seed of the audio attack (as the study's).")
def transcribe_cmd(corpus: str, labels: str | None, merge: str | None, cache_dir: str, recognizer: str,
                   language: str, compute_type: str, workers: int, chunk_size: int, max_length: int,
                   window_seconds: float, audio_variant: str | None, variant_seed: int) -> None:
    """Transcribe every utterance's audio (greedy Whisper decoding), cached in the store.

    A rerun reuses every transcript whose audio is unchanged; an interrupted run resumes. Prints the
    word error rate against the corpus's text when it has text. Extracting a `transcribed` variant runs
    this itself; a corpus without text reads the clean audio's transcripts as its text.
    """
    from featcache.transcribe import transcribe

    c = load_corpus_from_options(corpus, labels, merge)
    r = transcribe(c, cache_dir=Path(cache_dir), recognizer=recognizer, language=language,
                   compute_type=compute_type, workers=workers, chunk_size=chunk_size, max_length=max_length,
                   window_seconds=window_seconds, audio_variant=audio_variant, variant_seed=variant_seed)
    speed = (f", {r.decode_seconds / r.audio_seconds:.3f} s per second of audio"
             if r.audio_seconds > 0 else "")
    click.echo(f"{len(r.records)} transcripts in {r.path}: {r.decoded} decoded, {r.reused} reused{speed}")
    if r.wer is not None:
        click.echo(f"word error rate against the corpus's text: {100 * r.wer:.1f}% over {r.wer_words} words")
