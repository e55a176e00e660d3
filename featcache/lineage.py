"""What ``featcache cache verify`` checks beyond each entry and run on its own: every artifact against what
it records it was made from.

The chain, from the inputs up:

* **text analyses** (``text-analysis/*.json``): their tokens against the digest each file recorded;
* **entries**: an entry of a fine-tuned encoder against the SHA-256 its run recorded for those weights;
  an entry of a word-level text variant against the text analysis it records (the file's digest);
* **heads** (``heads/`` and ``ablations/``): each record (:mod:`featcache.heads.record`) against its place
  (the study, fold, seed and model its folders name), its files' SHA-256, and the entries it was trained
  on (they must still be in the store, with the same contents).

Each finding is one line: the file, what is wrong, what to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from featcache.cache import EntryInfo, FeatureStore
from featcache.cache.integrity import content_digest, digest_file, read_json_object
from featcache.heads import WEIGHTS_FILE
from featcache.heads.record import record_problem
from featcache.perturb.text_analysis import analysis_digest, analysis_problem

__all__ = ["Finding", "verify_lineage"]


@dataclass(frozen=True)
class Finding:
    """One artifact that disagrees with what it was made from.

    Attributes:
        path: The file.
        problem: What is wrong, in a few words.
        fix: What to do.
    """

    path: Path
    problem: str
    fix: str

    def line(self) -> str:
        return f"{self.path}: {self.problem}; {self.fix}"


def verify_lineage(store: FeatureStore, entries: Iterable[EntryInfo]) -> list[Finding]:
    """Check every text analysis, entry and head of a store against what it records it was made from.

    Args:
        store: The store.
        entries: Its entries (:meth:`FeatureStore.verify`'s result; only complete ones are compared).

    Returns:
        The findings, in the order above (empty when the chain holds).
    """
    complete = [i for i in entries if i.status == "complete"]
    return [*_analyses(store), *_entries(store, complete), *_heads(store, {content_digest(i.provenance) for i in complete})]


def _analyses(store: FeatureStore) -> list[Finding]:
    folder = store.text_analysis_dir
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return [Finding(p, problem, "it is analysed again when next needed (or delete it)")
            for p in files if (problem := analysis_problem(p))]


def _entries(store: FeatureStore, entries: list[EntryInfo]) -> list[Finding]:
    out = []
    runs = sorted(p.name for p in store.runs_dir.iterdir() if p.is_dir()) if store.runs_dir.is_dir() else []
    for info in entries:
        prov, fix = info.provenance, "delete it and extract it again"
        identity = prov.get("identity") if isinstance(prov.get("identity"), dict) else {}
        made_from = prov.get("text_analysis")
        if isinstance(made_from, dict) and isinstance(made_from.get("file"), str):
            path = store.text_analysis_dir / made_from["file"]
            now = analysis_digest(path) if path.is_file() else None
            if now is not None and now != made_from.get("sha256"):
                out.append(Finding(info.path, f"made from another text analysis than {path} holds now", fix))
        if identity.get("frozen") is False:
            run = next((r for r in runs if str(identity.get("run", "")).endswith(f"-{r}")), None)
            if run is None:
                continue  # the run is gone: nothing to compare with
            result, problem = read_json_object(store.run_dir(run) / "result.json")
            weights = result.get("weights") if not problem and isinstance(result.get("weights"), dict) else {}
            recorded = weights.get(f"{prov.get('modality')}_encoder.safetensors")
            if isinstance(recorded, dict) and str(recorded.get("sha256", ""))[:16] != identity.get("weights"):
                out.append(Finding(info.path, f"made from other encoder weights than run {run} holds now", fix))
    return out


def _heads(store: FeatureStore, digests: set[str]) -> list[Finding]:
    out = []
    for path, place in store.head_records():
        fix = ("train it again (`featcache train-heads`, or `featcache ablate` for an ablation's head, with the "
               "study's options)")
        record, problem = read_json_object(path)
        if problem:
            out.append(Finding(path, f"damaged head ({problem})", fix))
            continue
        recorded = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
        now: dict[str, str] = {}
        for name, digest in recorded.items():
            if name.endswith("_head"):  # a unimodal head beside it (a frozen study's); a run's head is not compared
                sibling = path.parent.parent / name.removesuffix("_head") / WEIGHTS_FILE
                if sibling.is_file():
                    now[name] = digest_file(sibling)
            else:
                now[name] = digest if digest in digests else "not in the store"
        found = record_problem(record, folder=path.parent, place=place, inputs=now)
        if found is not None:
            out.append(Finding(found[0], f"damaged head ({found[1]})" if "stale" not in found[1] else found[1], fix))
    return out
