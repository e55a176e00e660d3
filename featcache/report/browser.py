"""The utterance browser's data: every utterance under every condition, split into small files.

The browser section of ``report.html`` shows, for one condition at a time, each utterance's clean
and perturbed text, its true label, every model's two most probable labels (and its clean
prediction) and, where the report wrote them, the audio players. Its data are written beside the page
as one script per (condition, session), ``browser/c<K>-s<S>.js``, each calling
``featcacheBrowser.add(key, rows)``; the page loads the files a filter needs on demand with a
``<script>`` element, which works from ``file://`` without a server. With IEMOCAP's 5,672
utterances one file holds about 1,100 rows, a few hundred kilobytes.

Rows show the predictions of one seed (the examples' seed). Each row is a JSON array::

    [utt_id, label, clean_text, perturbed_text, [per model: [top1, p1, top2, p2, clean_pred] or null]]

with label indices into ``manifest["labels"]``, probabilities in hundredths, ``perturbed_text`` null
where it equals the clean text, and ``clean_pred`` -1 where the model has no clean prediction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from featcache.conditions import lookup
from featcache.data.corpus import fold_noun
from featcache.metrics.analysis import Analysis
from featcache.metrics.names import natural_key
from featcache.report.audio import AudioFiles

BROWSER_DIR = "browser"
"""Folder of the browser's data files, beside ``report.html``."""
PAGE_SIZE = 50
"""Rows per page of the browser."""


def _unimodal_of(analysis: Analysis, condition: str) -> list[str]:
    """The unimodal models whose input a condition perturbs (both for clean or a combination)."""
    cond = lookup(condition)
    uni = [analysis.text_model, analysis.audio_model]
    if cond is not None and len(cond.modalities) == 1:
        uni = [analysis.text_model if cond.modalities[0] == "text" else analysis.audio_model]
    return [m for m in uni if m in analysis.models()]


def write_browser(
    analysis: Analysis,
    out_dir: str | os.PathLike[str],
    *,
    seed: int,
    audio: Mapping[tuple[str, str], AudioFiles] | None = None,
) -> tuple[dict[str, Any], list[Path]]:
    """Write the browser's data files and return the manifest the page embeds.

    Args:
        analysis: The analysis (its predictions, models and condition order).
        out_dir: The report folder; files go to ``browser/`` (those an earlier report wrote and this one
            does not are removed by :func:`featcache.report.write.write_report`).
        seed: The seed whose predictions are shown.
        audio: ``(utt_id, condition) -> files`` written for the report.

    Returns:
        ``(manifest, files)``: the manifest (labels, models, sessions, conditions with their files and
        row counts, audio files) and the data files written.
    """
    p = analysis.predictions
    folder = Path(out_dir) / BROWSER_DIR
    folder.mkdir(parents=True, exist_ok=True)  # files of an earlier report: see featcache.report.write
    models = analysis.models()
    model_code = {m: k for k, m in enumerate(models)}
    keep = p.seed == seed
    utt_ids, utt_code = np.unique(p.utt_id[keep], return_inverse=True)
    utt_code = utt_code.reshape(-1)
    model = np.array([model_code.get(str(m), -1) for m in p.model[keep]], dtype=np.int64)
    cond_all = p.condition[keep]
    label = p.label[keep]
    session = p.session[keep]
    probs = p.probs[keep]
    order = np.argsort(-probs, axis=1, kind="stable")[:, :2]
    top_p = np.rint(np.take_along_axis(probs, order, axis=1) * 100).astype(np.int64)
    n_utt = len(utt_ids)

    clean_pred = np.full((len(models), n_utt), -1, dtype=np.int64)
    is_clean = cond_all == analysis.clean
    clean_pred[model[is_clean], utt_code[is_clean]] = order[is_clean, 0]
    utt_label = np.full(n_utt, -1, dtype=np.int64)
    utt_label[utt_code] = label
    utt_session = np.empty(n_utt, dtype=object)
    utt_session[utt_code] = session
    sessions = sorted({str(s) for s in session}, key=natural_key)
    rank = np.empty(n_utt, dtype=np.int64)
    rank[sorted(range(n_utt), key=lambda i: natural_key(str(utt_ids[i])))] = np.arange(n_utt)
    texts = p.texts

    manifest_conds = []
    files: list[Path] = []
    for k, cond in enumerate(analysis.conditions()):
        rows_of = np.flatnonzero(cond_all == cond)
        at = np.full((len(models), n_utt), -1, dtype=np.int64)
        at[model[rows_of], utt_code[rows_of]] = rows_of
        present = np.flatnonzero((at >= 0).any(axis=0))
        by_session: dict[str, list[list[Any]]] = {}
        for u in present[np.argsort(rank[present])].tolist():
            uid = str(utt_ids[u])
            clean_text = texts.get((analysis.clean, uid))
            pert = texts.get((cond, uid)) if cond != analysis.clean else None
            per_model: list[Any] = []
            for j in range(len(models)):
                r = at[j, u]
                per_model.append(None if r < 0 else [int(order[r, 0]), int(top_p[r, 0]), int(order[r, 1]),
                                                     int(top_p[r, 1]), int(clean_pred[j, u])])
            by_session.setdefault(str(utt_session[u]), []).append(
                [uid, int(utt_label[u]), clean_text, pert if pert != clean_text else None, per_model])
        entry: dict[str, Any] = {"name": str(cond), "unimodal": [model_code[m] for m in _unimodal_of(analysis, cond)],
                                 "files": {}, "n": {}}
        for s, rows in by_session.items():
            key = f"c{k}-s{sessions.index(s)}"
            path = folder / f"{key}.js"
            body = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
            path.write_text(f"featcacheBrowser.add({json.dumps(key)},{body});\n", encoding="utf-8")
            files.append(path)
            entry["files"][s] = f"{BROWSER_DIR}/{key}.js"
            entry["n"][s] = len(rows)
        manifest_conds.append(entry)

    audio_map: dict[str, dict[str, Any]] = {}
    for (utt, cond), f in (audio or {}).items():
        item = audio_map.setdefault(utt, {"clean": f.clean, "conditions": {}})
        if f.perturbed is not None:
            item["conditions"][cond] = f.perturbed
    fusion = [m for m in analysis.fusion_models()]
    manifest = {
        "labels": list(p.labels), "models": models, "fusion": [model_code[m] for m in fusion],
        "sessions": sessions, "fold": fold_noun(sessions)[:-1], "conditions": manifest_conds, "clean": analysis.clean,
        "seed": seed,
        "pageSize": PAGE_SIZE, "audio": audio_map,
    }
    return manifest, files


__all__ = ["BROWSER_DIR", "PAGE_SIZE", "write_browser"]
