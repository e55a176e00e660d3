"""Hub names: downloads through ``snapshot_download``, ``NAME@REVISION`` pins, the commit recorded, offline use."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import fake_iemocap
from conftest import one_line_error
from featcache.backbones import resolve
from featcache.backbones.resolve import HUB_BIN_PATTERNS, HUB_PATTERNS, resolve_backbone, split_revision
from featcache.cache import FeatureStore
from featcache.cli import cli
from featcache.data import read_iemocap
from featcache.errors import FeatcacheError
from featcache.extract import EncoderRun, extract
from tiny_models import tiny_bert

COMMIT = "86b5e0934494bd15c9632b12f734a8a67f723594"
OTHER = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT checkpoint, built once and copied into each test's hub cache."""
    return tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a network connection was opened: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache named by ``HF_HUB_CACHE``."""
    path = tmp_path / "hf-hub"
    path.mkdir()
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(path))
    return path


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """``HF_HUB_OFFLINE`` unset, as huggingface_hub sees it now and saw it at import."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _snapshot(cache: Path, repo: str, commit: str, checkpoint: Path, *, ref: str | None = "main") -> Path:
    """The hub cache layout of one repository: ``models--ORG--NAME/snapshots/<commit>/`` (+ ``refs/<ref>``)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / commit
    shutil.copytree(checkpoint, snap, dirs_exist_ok=True)
    if ref is not None:
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / ref).write_text(commit)  # huggingface_hub writes it with no newline
    return snap


class FakeHub:
    """Stands in for ``huggingface_hub.snapshot_download``: records its calls and "downloads" the tiny
    checkpoint into the hub cache it is given, at the commit a branch or tag names."""

    def __init__(self, checkpoint: Path, *, commits: dict[str | None, str], weights_later: bool = False) -> None:
        self.checkpoint, self.commits, self.weights_later = checkpoint, commits, weights_later
        self.calls: list[dict[str, Any]] = []

    def __call__(self, repo_id: str, **kw: Any) -> str:
        self.calls.append({"repo_id": repo_id, **kw})
        commit = kw["revision"] if kw["revision"] in self.commits.values() else self.commits[kw["revision"]]
        snap = _snapshot(Path(kw["cache_dir"]), repo_id, commit, self.checkpoint, ref=None)
        if self.weights_later and len(self.calls) == 1:  # a repository without safetensors weights
            (snap / "model.safetensors").unlink()
        return str(snap)


def test_split_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert split_revision(f"bert-base-uncased@{COMMIT}") == ("bert-base-uncased", COMMIT)
    assert split_revision("org/name@v1.0") == ("org/name", "v1.0")
    assert split_revision("org/name@refs/pr/1") == ("org/name", "refs/pr/1")  # a revision may hold "/"
    assert split_revision("org/name") == ("org/name", None)
    assert split_revision("minilm") == ("minilm", None)
    assert split_revision("./ckpt@v2") == ("./ckpt@v2", None)  # a path, never a hub name
    assert split_revision("/models/ckpt@v2") == ("/models/ckpt@v2", None)
    (tmp_path / "ckpt@v2").mkdir()
    monkeypatch.chdir(tmp_path)
    assert split_revision("ckpt@v2") == ("ckpt@v2", None)  # an existing directory, whatever its name
    for bad in ("name@", "@main"):
        with pytest.raises(FeatcacheError, match="NAME@REVISION"):
            split_revision(bad)
    with pytest.raises(FeatcacheError, match="packaged alias"):
        resolve_backbone("minilm@main")


def test_local_directory_with_at_is_a_directory(checkpoint: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    d = shutil.copytree(checkpoint, tmp_path / "ckpt@v2")

    def no_hub(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("a directory was looked up on the hub")

    monkeypatch.setattr("huggingface_hub.snapshot_download", no_hub)
    r = resolve_backbone(str(d))
    assert r.path == d.resolve() and r.revision is None and r.model_type == "bert"
    monkeypatch.chdir(tmp_path)
    r = resolve_backbone("ckpt@v2")
    assert r.path == d.resolve() and r.revision is None
    assert EncoderRun("text", str(d)).name == "text-ckpt_v2-frozen"


@pytest.mark.usefixtures("online", "no_network")
def test_online_download_pins_the_revision_and_records_the_commit(checkpoint: Path, hub_cache: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHub(checkpoint, commits={"main": COMMIT, None: COMMIT, "v1": OTHER})
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake)
    r = resolve_backbone("org/name@main")
    assert r.revision == COMMIT and r.path == hub_cache / "models--org--name" / "snapshots" / COMMIT
    assert fake.calls == [{"repo_id": "org/name", "revision": "main", "cache_dir": hub_cache,
                           "local_files_only": False, "allow_patterns": list(HUB_PATTERNS)}]
    assert resolve_backbone("org/name@main").revision == COMMIT and len(fake.calls) == 1  # once per process
    assert resolve_backbone("org/name@v1").revision == OTHER and fake.calls[-1]["revision"] == "v1"

    corpus = read_iemocap(fake_iemocap.build(tmp_path / "I", fake_iemocap.small_counts(per_cell=1)))
    store = FeatureStore(tmp_path / "cache")
    pinned = extract(corpus, store, run=EncoderRun("text", f"org/name@{COMMIT}"), variant="clean", progress=False)
    assert fake.calls[-1]["revision"] == COMMIT and fake.calls[-1]["local_files_only"] is False
    with store.open(pinned.key) as e:
        assert e.provenance["revision"] == COMMIT and e.provenance["backbone"] == f"org/name@{COMMIT}"
    # two names of one commit name the same entry (the revision is not part of the key, the weights are)
    plain = extract(corpus, store, run=EncoderRun("text", "org/name"), variant="clean", progress=False)
    assert plain.status == "skipped" and plain.key == pinned.key
    assert pinned.key.run == "text-name-frozen"


@pytest.mark.usefixtures("online", "no_network")
def test_repository_without_safetensors_fetches_its_bin_weights(checkpoint: Path, hub_cache: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHub(checkpoint, commits={"main": COMMIT}, weights_later=True)
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake)
    r = resolve_backbone("org/old@main")
    assert r.revision == COMMIT and (r.path / "model.safetensors").is_file()
    assert [c["allow_patterns"] for c in fake.calls] == [list(HUB_PATTERNS), list(HUB_BIN_PATTERNS)]
    assert fake.calls[1]["revision"] == COMMIT  # the commit the first call resolved, not the branch again


@pytest.mark.usefixtures("online", "hub_cache")
def test_failed_download_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    def unreachable(*args: Any, **kwargs: Any) -> str:
        raise LocalEntryNotFoundError("An error happened while trying to locate the files on the Hub")

    monkeypatch.setattr("huggingface_hub.snapshot_download", unreachable)
    with pytest.raises(FeatcacheError) as e:
        resolve_backbone("org/gone@v2")
    line = str(e.value)
    assert "\n" not in line and line.startswith("backbone 'org/gone@v2' is not available offline (download failed: "
                                                "the hub could not be reached)")
    assert "`hf download org/gone --revision v2`" in line

    def full(*args: Any, **kwargs: Any) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("huggingface_hub.snapshot_download", full)
    with pytest.raises(FeatcacheError, match=r"download failed: No space left on device\)"):
        resolve_backbone("org/big")


@pytest.mark.usefixtures("offline", "no_network")
@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HF_HOME"])
def test_offline_resolves_from_a_filled_hub_cache(checkpoint: Path, tmp_path: Path, variable: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv(variable, str(cache if variable == "HF_HUB_CACHE" else cache.parent))
    snap = _snapshot(cache, "org/name", COMMIT, checkpoint)
    _snapshot(cache, "org/name", OTHER, checkpoint, ref="v1")
    for name, commit in (("org/name", COMMIT), ("org/name@main", COMMIT), (f"org/name@{COMMIT}", COMMIT),
                         ("org/name@v1", OTHER)):
        r = resolve_backbone(name)
        assert r.revision == commit and r.name == name and r.model_type == "bert", name
    assert resolve_backbone("org/name").path == snap


@pytest.mark.usefixtures("offline", "no_network", "hub_cache")
def test_offline_message_when_nothing_is_cached(tmp_path: Path) -> None:
    with pytest.raises(FeatcacheError) as e:
        resolve_backbone("org/missing@v1")
    assert str(e.value) == ("backbone 'org/missing@v1' is not available offline; on a machine with network run "
                            "`hf download org/missing --revision v1` (then copy ~/.cache/huggingface) or pass a "
                            "local checkpoint directory")
    corpus = fake_iemocap.build(tmp_path / "I", fake_iemocap.small_counts(per_cell=1))
    r = CliRunner().invoke(cli, ["extract", "--corpus", f"iemocap:{corpus}", "--cache-dir", str(tmp_path / "c"),
                                 "--modality", "text", "--text-backbone", "org/missing", "--workers", "0",
                                 "--device", "cpu"])
    assert "backbone 'org/missing' is not available offline" in one_line_error(r)


@pytest.mark.usefixtures("offline", "no_network")
def test_cli_extract_pinned_hub_backbone_and_cache_ls_shows_the_commit(checkpoint: Path, hub_cache: Path,
                                                                       tmp_path: Path) -> None:
    _snapshot(hub_cache, "org/name", COMMIT, checkpoint)
    corpus = fake_iemocap.build(tmp_path / "I", fake_iemocap.small_counts(per_cell=1))
    cache = tmp_path / "cache"
    r = CliRunner().invoke(cli, ["extract", "--corpus", f"iemocap:{corpus}", "--cache-dir", str(cache),
                                 "--modality", "text", "--text-backbone", f"org/name@{COMMIT}", "--workers", "0",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    listed = CliRunner().invoke(cli, ["cache", "ls", "--cache-dir", str(cache), "--long"])
    assert listed.exit_code == 0, listed.output
    assert f'revision = "{COMMIT}"' in listed.output and f"org/name@{COMMIT}" in listed.output
    assert "text-name-frozen" in listed.output


def test_hub_offline_reads_the_variable_like_huggingface_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for value, expected in (("1", True), ("yes", True), ("ON", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert resolve.hub_offline() is expected, value
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert resolve.hub_offline() is False
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as huggingface_hub read it at import
    assert resolve.hub_offline() is True


@pytest.mark.usefixtures("offline", "no_network")
def test_finetuning_run_records_the_commit(checkpoint: Path, hub_cache: Path, tmp_path: Path) -> None:
    from featcache.finetune import finetune
    from featcache.presets import TrainSettings, get_preset, with_overrides

    _snapshot(hub_cache, "org/name", COMMIT, checkpoint)
    corpus = read_iemocap(fake_iemocap.build(tmp_path / "I", fake_iemocap.small_counts(per_cell=1)))
    preset = with_overrides(get_preset("demo"), text_backbone="org/name@main",
                            text=TrainSettings(batch_size=8, lr=1e-3, max_epochs=1, patience=1))
    run = finetune(corpus, FeatureStore(tmp_path / "cache"), preset=preset, modality="text", fold=2, seed=0,
                   progress=False)
    assert run.result["backbone_revisions"] == {"text": COMMIT}
    assert run.config["backbones"] == {"text": "org/name@main"}  # the name as asked is the run's identity


def test_the_report_says_which_commit_made_the_vectors(checkpoint: Path, hub_cache: Path, tmp_path: Path) -> None:
    """A study on a pinned hub backbone: train-heads and evaluate --out; the report's methods line (tables.md,
    summary.md, report.html) names the backbone with the commit and the digest of its weights."""
    _snapshot(hub_cache, "org/name", COMMIT, checkpoint)
    corpus = fake_iemocap.build(tmp_path / "I", fake_iemocap.small_counts(per_cell=1))
    common = ["--corpus", f"iemocap:{corpus}", "--cache-dir", str(tmp_path / "cache"), "--text-backbone",
              f"org/name@{COMMIT}", "--frozen", "--seeds", "0", "--head-epochs", "2"]
    r = CliRunner().invoke(cli, ["extract", *common[:-4], "--modality", "text", "--workers", "0", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["train-heads", *common, "--models", "text"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["evaluate", *common, "--condition", "clean", "--out", str(tmp_path / "report")])
    assert r.exit_code == 0, r.output
    line = f"text org/name@{COMMIT[:12]} (weights "
    for name in ("tables.md", "summary.md", "report.html"):
        assert line in (tmp_path / "report" / name).read_text(encoding="utf-8"), name
