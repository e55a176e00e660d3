"""Corpus statistics: label x session (or partition) counts and durations (the paper's Tables 1 and 2)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from featcache.data.audio import audio_duration
from featcache.data.corpus import Corpus, fold_title


@dataclass(frozen=True)
class CorpusStats:
    """Label x session counts and durations.

    Attributes:
        sessions: Session names, in fold order (a fixed split's partitions: train, dev, test).
        labels: Labels, in class order.
        counts: counts[label][session].
        seconds: Total duration per label (None when durations are unknown).
    """

    sessions: tuple[str, ...]
    labels: tuple[str, ...]
    counts: dict[str, dict[str, int]]
    seconds: dict[str, float | None]

    @property
    def total(self) -> int:
        return sum(sum(row.values()) for row in self.counts.values())

    def format(self) -> str:
        """Render as a plain-text table in the layout of the paper's Table 2."""
        head = ["Label", *(fold_title(s) for s in self.sessions), "Total", "%", "Hours", "Mean s"]
        rows = []
        n = self.total
        for lab in self.labels:
            c = self.counts[lab]
            tot = sum(c.values())
            secs = self.seconds.get(lab)
            rows.append(
                [
                    lab,
                    *(str(c.get(s, 0)) for s in self.sessions),
                    f"{tot:,}",
                    f"{100 * tot / n:.1f}%",
                    f"{secs / 3600:.2f}" if secs is not None else "-",
                    f"{secs / tot:.2f}" if secs is not None and tot else "-",
                ]
            )
        per_session = Counter()
        for lab in self.labels:
            per_session.update(self.counts[lab])
        known = [v for v in self.seconds.values() if v is not None]
        all_secs = sum(known) if len(known) == len(self.labels) else None
        rows.append(
            [
                "Total",
                *(str(per_session.get(s, 0)) for s in self.sessions),
                f"{n:,}",
                "100.0%",
                f"{all_secs / 3600:.2f}" if all_secs is not None else "-",
                f"{all_secs / n:.2f}" if all_secs is not None else "-",
            ]
        )
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
        lines = [fmt(head), "  ".join("-" * w for w in widths)]
        lines += [fmt(r) for r in rows[:-1]] + ["  ".join("-" * w for w in widths), fmt(rows[-1])]
        return "\n".join(lines)


def corpus_stats(corpus: Corpus, *, read_audio_headers: bool = True) -> CorpusStats:
    """Count utterances per label and session and sum their durations.

    Args:
        corpus: Any corpus.
        read_audio_headers: For utterances whose listing gives no duration, take it from their audio
            file's header (cheap: nothing is decoded). With False, or without audio, such a label's
            duration is unknown.

    Returns:
        The breakdown, labels in the corpus's class order.

    Raises:
        DataError: An audio file whose header cannot be read.
    """
    counts: dict[str, dict[str, int]] = {lab: {} for lab in corpus.labels}
    seconds: dict[str, float | None] = {lab: 0.0 for lab in corpus.labels}
    for u in corpus.utterances:
        counts[u.label][u.session] = counts[u.label].get(u.session, 0) + 1
        duration = u.duration
        if duration is None and read_audio_headers and u.audio is not None:
            duration = audio_duration(u.audio)
        if duration is None:
            seconds[u.label] = None
        elif seconds[u.label] is not None:
            seconds[u.label] = seconds[u.label] + duration  # type: ignore[operator]
    return CorpusStats(sessions=corpus.partitions, labels=corpus.labels, counts=counts, seconds=seconds)
