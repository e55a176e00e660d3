"""Audio files: decoding to float32 mono at 16 kHz (downmixing, resampling) and reading a file's length
from its header."""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

import numpy as np

from featcache.errors import DataError

#: The package's logger (the name it had before the split into modules).
log = logging.getLogger("featcache.data")

SAMPLE_RATE = 16_000

#: Containers soundfile does not read (a video clip's audio track, MELD's ``.mp4``): decoded through
#: ``audioread`` (ffmpeg, GStreamer or Core Audio, where one is installed).
CONTAINERS: frozenset[str] = frozenset({".mp4", ".m4a", ".mkv", ".mov", ".avi", ".webm", ".aac"})


def audio_path_error(path: str | Path, *, listed: str | None = None) -> DataError | None:
    """What keeps an audio path from being opened, other than its absence: a symbolic link loop (``ELOOP``),
    a folder, a path that may not be searched.

    A missing file (a dangling link included) is no error here: each caller says where it was listed.

    Args:
        path: The audio file as the corpus lists it.
        listed: Where it is listed (``m.csv:4``), named in the message; None names nothing.

    Returns:
        One-line error naming the file, the problem and the fix; None when the path is a regular file or is
        not there at all.
    """
    where = f" (listed in {listed})" if listed else ""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        if e.errno == errno.ELOOP:
            return DataError(f"{path}: audio path is a symbolic link loop (too many levels of symbolic links){where}; "
                             "point the link at the audio file or replace it with the file")
        reason = (e.strerror or type(e).__name__).lower()
        return DataError(f"{path}: cannot open the audio file ({reason}){where}; check the path and its permissions")
    if not stat.S_ISREG(st.st_mode):
        return DataError(f"{path}: not an audio file (a folder or a device){where}; list the audio file itself")
    return None


def load_audio(path: str | Path, *, sr: int = SAMPLE_RATE, strict: bool = False) -> np.ndarray:
    """Read a wav file as float32 mono at ``sr`` Hz.

    Stereo files are downmixed and other sample rates resampled (``librosa.resample``), each with a
    one-line warning naming the file; with ``strict=True`` both are errors instead.

    Args:
        path: Audio file.
        sr: Target sample rate.
        strict: Refuse instead of converting.

    Returns:
        1-D float32 array.

    Raises:
        DataError: Missing, unreadable or empty file, a symbolic link loop, NaN or infinite samples; or, when
            strict, a wrong sample rate or channel count.
    """
    import soundfile as sf

    path = Path(path)
    problem = audio_path_error(path)
    if problem is not None:
        raise problem
    if not path.is_file():
        raise DataError(f"{path}: audio file not found; restore it or fix the corpus listing")
    try:
        if path.suffix.lower() in CONTAINERS:
            data, file_sr = _decode_container(path)
        else:
            data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except DataError:
        raise
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError with a multi-line text
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if reason.startswith("Error opening"):  # libsndfile repeats the path: keep only the cause
            reason = reason.rsplit(": ", 1)[-1].rstrip(".")
        raise DataError(f"{path}: unreadable audio ({reason}); re-export it as a 16 kHz mono PCM wav") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: audio file is empty (0 samples); re-export it or drop the utterance")
    finite = np.isfinite(data)
    if not finite.all():
        raise DataError(f"{path}: {data.size - int(finite.sum())} of {data.size} audio samples are NaN or infinite; "
                        "re-export it or drop the utterance")
    if data.shape[1] > 1:
        if strict:
            raise DataError(f"{path}: {data.shape[1]} channels; downmix to mono (strict=True refuses to convert)")
        log.warning("%s: %d channels, downmixed to mono", path, data.shape[1])
        data = data.mean(axis=1, keepdims=True)
    y = data[:, 0]
    if file_sr != sr:
        if strict:
            raise DataError(f"{path}: sample rate {file_sr} Hz; resample to {sr} Hz (strict=True refuses to convert)")
        log.warning("%s: sample rate %d Hz, resampled to %d Hz", path, file_sr, sr)
        import librosa

        y = librosa.resample(y, orig_sr=file_sr, target_sr=sr)
    return np.ascontiguousarray(y, dtype=np.float32)


def _decode_container(path: Path) -> tuple[np.ndarray, int]:
    """The audio track of a container (``.mp4``) as float32 ``[frames, channels]`` and its rate, by audioread.

    Raises:
        DataError: No decoder can read it: one line naming the file and the ``ffmpeg`` command that converts it
            into the ``.wav`` beside it, which the corpus readers then take.
    """
    wav = path.with_suffix(".wav")
    fix = f"install ffmpeg, or convert it once: ffmpeg -i {path} -vn -ac 1 -ar 16000 {wav} (the .wav is then read)"
    try:
        import audioread

        with audioread.audio_open(str(path)) as f:
            channels, rate = f.channels, f.samplerate
            pcm = b"".join(f)
    except Exception as e:  # audioread's NoBackendError, a decoder's error, a missing package
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: cannot decode the audio of this {path.suffix} clip ({reason or 'no decoder'}); "
                        f"{fix}") from None
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, max(channels, 1)), int(rate)


def audio_duration(path: str | Path) -> float:
    """Length of an audio file in seconds, from its header (nothing is decoded).

    Args:
        path: Audio file.

    Returns:
        frames / sample rate.

    Raises:
        DataError: Missing or unreadable file, or a symbolic link loop.
    """
    import soundfile as sf

    problem = audio_path_error(path)
    if problem is not None:
        raise problem
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError with a multi-line text
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if reason.startswith("Error opening"):  # libsndfile repeats the path: keep only the cause
            reason = reason.rsplit(": ", 1)[-1].rstrip(".")
        raise DataError(f"{path}: unreadable audio header ({reason}); re-export it as a 16 kHz mono PCM wav") from None
    return info.frames / info.samplerate if info.samplerate else 0.0
