from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import fake_iemocap  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The per-user model cache (``FEATCACHE_MODELS``) for the whole session, never the real ~/.cache.

    Session-scoped, so a model converted once (the packaged Whisper base) serves every test.
    """
    path = tmp_path_factory.mktemp("featcache-models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEATCACHE_MODELS", str(path))
        yield path


@pytest.fixture
def small_iemocap(tmp_path: Path) -> Path:
    """A fake release with audio: 2 of each kept label per session (+1 exc, +1 xxx)."""
    return fake_iemocap.build(tmp_path / "IEMOCAP", fake_iemocap.small_counts(), audio=True)


def one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    """Assert a CLI result failed with exactly one 'Error: ...' line and no traceback; return it."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    out = (result.stderr if hasattr(result, "stderr") else result.output).strip()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    err = [ln for ln in lines if ln.startswith("Error:")]
    assert len(err) == 1, out
    assert "Traceback" not in out
    return err[0]
