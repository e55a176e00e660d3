"""Plugins: an encoder and an attack from another package (entry points ``featcache.encoders`` and
``featcache.attacks``), installed with pip from tests/plugins/featcache_toy into a temporary folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import fake_iemocap
from conftest import one_line_error
from featcache import executors
from featcache.backbones import plugins
from featcache.backbones.encoders import select_layers
from featcache.backbones.plugins import PluginEncoder
from featcache.cache import FeatureStore
from featcache.cli import cli
from featcache.data import read_iemocap
from featcache.errors import FeatcacheError
from featcache.extract import EncoderRun, plan_entry
from featcache.perturb import registry

TOY = Path(__file__).parent / "plugins" / "featcache_toy"


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The toy plugin installed by pip (offline, no dependencies) into one folder per version, 1.0 and 2.0."""
    tmp = tmp_path_factory.mktemp("toy-plugin")
    out = {}
    for version in ("1.0", "2.0"):
        src = tmp / f"src-{version}"
        shutil.copytree(TOY, src)  # (the build writes next to its sources: not into tests/)
        pyproject = src / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace('version = "1.0"', f'version = "{version}"'))
        site = tmp / f"site-{version}"
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                        "--quiet", "--target", str(site), str(src)], check=True)
        out[version] = site
    return out


@pytest.fixture
def install(sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """``install(version)`` puts that version's folder on sys.path (as a site-packages folder would be), in
    a registry and plugin cache of this test's own; all of it is undone after the test."""
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    monkeypatch.setattr(registry, "_PRESETS", dict(registry._PRESETS))
    monkeypatch.setattr(registry, "_PRESET_BY_PARAMS", dict(registry._PRESET_BY_PARAMS))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(plugins, "_LOADED", {})
    monkeypatch.setattr(executors, "_ENCODER", {})

    def use(version: str) -> None:
        for site in sites.values():
            while str(site) in sys.path:
                sys.path.remove(str(site))
        sys.modules.pop("featcache_toy", None)
        monkeypatch.syspath_prepend(str(sites[version]))  # (invalidates the import caches too)

    try:
        yield use
    finally:
        sys.modules.pop("featcache_toy", None)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_iemocap.build(tmp_path_factory.mktemp("I"), fake_iemocap.small_counts(), audio=True, seconds=0.1)


def _extract(corpus_dir: Path, cache: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["extract", "--corpus", f"iemocap:{corpus_dir}", "--cache-dir", str(cache),
                                    "--modality", "text", "--text-backbone", "plugin:toy", "--workers", "0", *args])


def _toy_vectors(texts: list[str]) -> np.ndarray:
    from featcache_toy import ToyEncoder

    toy = ToyEncoder()
    return toy.encode(**toy.collate([toy.prepare(t) for t in texts])).numpy()


def _entry(corpus_dir: Path, cache: Path, variant: str = "clean", **run: Any) -> Any:
    corpus = read_iemocap(corpus_dir)
    store = FeatureStore(cache)
    planned = plan_entry(corpus, store, run=EncoderRun("text", "plugin:toy", **run), variant=variant)
    assert planned is not None
    return corpus, store.open(planned.key)


def test_a_plugin_encoder_extracts_and_its_version_names_its_entries(install, corpus_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    install("1.0")
    cache = tmp_path / "cache"
    r = _extract(corpus_dir, cache)
    assert r.exit_code == 0, r.output
    assert "written" in r.output
    corpus, e = _entry(corpus_dir, cache)
    ident = e.provenance["identity"]["encoder"]["plugin"]
    assert ident["distribution"] == "featcache-toy" and ident["version"] == "1.0" and ident["dim"] == 16
    assert ident["identity"] == {"name": "toy-bow", "version": "1.0", "bins": 16}
    assert e.provenance["plugin"] == ident and e.provenance["pooling"] == "plugin"
    assert e.provenance["identity"]["model_type"] == "plugin"
    np.testing.assert_array_equal(e.vectors(), _toy_vectors([corpus.by_id(i).text or "" for i in e.ids]))
    first = e.key
    assert "skipped" in _extract(corpus_dir, cache).output
    # featcache's own text options do not reach a plugin: they name no other entry
    assert "skipped" in _extract(corpus_dir, cache, "--pooling", "mean").output

    install("2.0")  # another version of the plugin: other entries, the first one kept
    r2 = _extract(corpus_dir, cache)
    assert r2.exit_code == 0 and "written" in r2.output, r2.output
    _, e2 = _entry(corpus_dir, cache)
    assert e2.provenance["plugin"]["version"] == "2.0" and e2.key.hash != first.hash
    assert sorted(i.status for i in FeatureStore(cache).iter_entries()) == ["complete", "complete"]


def test_a_plugin_attack_is_listed_and_extracted_in_workers(install, corpus_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    install("1.0")
    listing = CliRunner().invoke(cli, ["variants"])
    assert listing.exit_code == 0, listing.output
    (row,) = [ln for ln in listing.output.splitlines() if ln.startswith("shout ")]
    assert row.split()[:3] == ["shout", "text", "p=0.5"] and "toy plugin" in row
    assert "shout" in listing.output.split("kinds:")[1]
    cache = tmp_path / "cache"
    r = _extract(corpus_dir, cache, "--variant", "clean", "--variant", "shout", "--workers", "1")
    assert r.exit_code == 0, r.output
    corpus, clean = _entry(corpus_dir, cache)
    _, shout = _entry(corpus_dir, cache, "shout")
    assert shout.provenance["variant"] == "shout"
    records = shout.records()
    changed = {u for u, rec in records.items() if rec.get("edits")}
    assert changed and len(changed) < len(corpus)
    shouted = [registry.replay(records[i], corpus.by_id(i).text or "") for i in shout.ids]
    assert any(t != (corpus.by_id(i).text or "") for t, i in zip(shouted, shout.ids))
    np.testing.assert_array_equal(shout.vectors(), _toy_vectors(shouted))
    a, c = shout.vectors(), clean.vectors(clean.ids)
    moved = {u for u, x, y in zip(shout.ids, a, c[[clean.ids.index(u) for u in shout.ids]]) if not np.array_equal(x, y)}
    assert moved and moved <= changed


def test_layers_of_a_plugin_that_declares_hidden_states(install, corpus_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    install("1.0")
    cache = tmp_path / "cache"
    assert _extract(corpus_dir, cache).exit_code == 0
    r = _extract(corpus_dir, cache, "--layers", "all")
    assert r.exit_code == 0, r.output
    _, last = _entry(corpus_dir, cache)
    _, every = _entry(corpus_dir, cache, layers="all")
    assert every.vectors().shape == (len(every.ids), 2, 16)
    np.testing.assert_array_equal(every.vectors(layer=1), last.vectors(every.ids))


class _NoLayers:
    modality, dim = "text", 3

    def identity(self) -> dict[str, Any]:
        return {}

    def prepare(self, x: str) -> dict[str, Any]:
        return {"n": np.float32(len(x))}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        return {"n": torch.tensor([it["n"] for it in items])}

    def encode(self, n: Any) -> Any:
        return n[:, None].repeat(1, 2)  # one number short of dim


def test_the_adapter_checks_what_a_plugin_returns() -> None:
    enc = PluginEncoder(_NoLayers(), name="plugin:nolayers")
    with pytest.raises(FeatcacheError, match=r"declares no n_hidden_states\); extract without --layers"):
        select_layers(enc, "all")
    item = enc.prepare("four")
    assert item["L"] == 0 and enc.mask_token is None
    batch = enc.collate([{**item, "id": "u1", "label": 0, "record": {}, "digest": b""}])
    with pytest.raises(FeatcacheError, match=r"encode returned shape \(1, 2\), expected \(1, 3\)"):
        enc(**batch)


def test_plugin_errors_are_one_line(install, corpus_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    install("1.0")
    base = ["--corpus", f"iemocap:{corpus_dir}", "--cache-dir", str(tmp_path / "c")]
    line = one_line_error(CliRunner().invoke(cli, ["extract", *base, "--modality", "text", "--text-backbone",
                                                   "plugin:nope", "--workers", "0"]))
    assert "no encoder plugin 'nope' is installed" in line and "installed: plugin:toy" in line
    line = one_line_error(CliRunner().invoke(cli, ["extract", *base, "--modality", "audio", "--audio-backbone",
                                                   "plugin:toy", "--workers", "0"]))
    assert "is a text encoder plugin; pass it as --text-backbone" in line
    line = one_line_error(CliRunner().invoke(cli, ["finetune", *base, "--modality", "text", "--fold", "1",
                                                   "--text-backbone", "plugin:toy"]))
    assert "plugin encoder, used frozen" in line


def test_the_toy_plugin_is_not_left_installed() -> None:
    assert "toy" not in {ep.name for ep in entry_points(group=plugins.ENCODER_GROUP)}
    assert "featcache_toy" not in sys.modules and "shout" not in registry.kinds()
