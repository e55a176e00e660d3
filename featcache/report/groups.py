"""The report's Groups section: robustness by group (``featcache evaluate --by sex``).

For each grouping asked for (IEMOCAP's ``sex``, a manifest's ``group:NAME`` columns, EmoBox's ``speaker``)
and each model, a table: one row per group with its test utterances, its clean Avg. accuracy and each
attack's impact on its utterances (mean ± std over seeds, with the paired bootstrap interval), and a last
row with the largest gap between groups in each column (the highest group minus the lowest, with the
interval of that difference); see :mod:`featcache.metrics.by_group` for the definitions. The section is in
``tables.md``, ``summary.md`` (a few lines), ``report.html`` and ``summary.csv`` (rows with a ``grouping``).

Which utterance is in which group comes from the corpus; it is written beside the predictions
(``groups.json``), so that ``featcache report`` draws the same section again from the saved predictions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcache.data.corpus import GROUP_PREFIX
from featcache.errors import FeatcacheError
from featcache.metrics.analysis import Analysis
from featcache.metrics.by_group import GroupCell, GroupGap, GroupTable, group_tables
from featcache.report.markup import inline, markdown_to_html
from featcache.report.parts import ORDER, Part
from featcache.report.render import _num, _signed
from featcache.report.sections import read_section

if TYPE_CHECKING:
    from featcache.data import Corpus

GROUPS_FILE = "groups.json"
"""The section's inputs (each grouping's utterance -> group), beside ``predictions.h5``."""
GROUPS_FORMAT = "featcache-groups"
"""The ``format`` of ``groups.json``."""


def parse_group_names(values: Iterable[str]) -> tuple[str, ...]:
    """The groupings ``--by`` names: repeated or comma-separated, ``group:NAME`` read as ``NAME``, each once.

    Args:
        values: The ``--by`` values (``("sex", "group:accent,speaker")``).

    Returns:
        The names, in the order given.
    """
    names = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            name = name[len(GROUP_PREFIX):].strip() if name.startswith(GROUP_PREFIX) else name
            if name and name not in names:
                names.append(name)
    return tuple(names)


@dataclass(frozen=True)
class GroupSection:
    """What the Groups section compares.

    Attributes:
        groupings: ``grouping -> utterance id -> group``, in the order asked for.
    """

    groupings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Nothing to show."""
        return not self.groupings

    @classmethod
    def from_corpus(cls, corpus: Corpus, names: Iterable[str]) -> GroupSection:
        """The groupings of a corpus that ``--by`` names.

        Args:
            corpus: The corpus.
            names: As ``--by`` gives them (see :func:`parse_group_names`).

        Returns:
            The section.

        Raises:
            DataError: A grouping no utterance has a group in (one line naming the corpus's groupings).
        """
        return cls({name: corpus.groups(name) for name in parse_group_names(names)})

    def to_json(self) -> dict[str, Any]:
        """The section as JSON-able values (read back by :func:`read_group_section`)."""
        return {"format": GROUPS_FORMAT,
                "groupings": {name: dict(sorted(m.items())) for name, m in self.groupings.items()}}


def read_group_section(path: str | Path) -> GroupSection | None:
    """The section written beside saved predictions (``groups.json``).

    Args:
        path: The file.

    Returns:
        The section, or None when there is no such file.

    Raises:
        FeatcacheError: The file does not read as a section featcache wrote.
    """
    fix = "delete it (the report then has no Groups section) or run `featcache evaluate --by ...` again"
    data = read_section(path, GROUPS_FORMAT, what="groups", fix=fix)
    if data is None:
        return None
    groupings = data.get("groupings")
    if not (isinstance(groupings, dict) and all(isinstance(m, dict) and all(isinstance(v, str) for v in m.values())
                                                 for m in groupings.values())):
        raise FeatcacheError(f"{path}: not a featcache groups file; {fix}")
    return GroupSection({str(k): {str(u): v for u, v in m.items()} for k, m in groupings.items()})


def section_tables(analysis: Analysis, section: GroupSection | None, *, n_resamples: int, confidence: float,
                   seed: int) -> list[GroupTable]:
    """Every grouping's tables (:func:`featcache.metrics.by_group.group_tables`), grouping by grouping.

    Args:
        analysis: The report's analysis.
        section: The section, if any.
        n_resamples: Bootstrap resamples (0: no intervals).
        confidence: Confidence level.
        seed: Resampling seed.

    Returns:
        The tables.
    """
    if section is None:
        return []
    return [t for name, groups in section.groupings.items()
            for t in group_tables(analysis, groups, grouping=name, n_resamples=n_resamples, confidence=confidence,
                                  seed=seed)]


# -- text ----------------------------------------------------------------------------------------


def _cell_md(cell: GroupCell | None, *, accuracy: bool) -> str:
    if cell is None or not math.isfinite(cell.stat.mean):
        return ""
    scale = 100.0 if accuracy else 1.0
    m, s = cell.stat.mean * scale, cell.stat.std * scale
    text = _num(m) if accuracy else f"{_signed(m)}%"
    text += f" ± {_num(s)}" if math.isfinite(s) else ""
    ci = cell.ci
    if ci is not None and math.isfinite(ci.low):
        fmt = _num if accuracy else _signed
        text += f" [{fmt(ci.low * scale)}, {fmt(ci.high * scale)}]"
    return text


def _gap_md(gap: GroupGap | None, *, accuracy: bool) -> str:
    if gap is None:
        return ""
    scale = 100.0 if accuracy else 1.0
    cell = gap.gap
    text = f"{_signed(cell.stat.mean * scale)} ({_esc(gap.high)} − {_esc(gap.low)})"
    if math.isfinite(cell.stat.std):
        text += f" ± {_num(cell.stat.std * scale)}"
    if cell.ci is not None and math.isfinite(cell.ci.low):
        text += f" [{_signed(cell.ci.low * scale)}, {_signed(cell.ci.high * scale)}]"
    return text


def _esc(text: str) -> str:
    return text.replace("|", "\\|")


def table_heading(t: GroupTable) -> str:
    """The line above a table: the model, the grouping and its groups.

    Args:
        t: The table.

    Returns:
        E.g. ``text by sex: 2 groups (F, M)``.
    """
    groups = [r.group for r in t.rows]
    shown = ", ".join(groups[:8]) + (", ..." if len(groups) > 8 else "")
    return f"{t.model} by {t.grouping}: {len(groups)} group{'s' if len(groups) != 1 else ''} ({shown})"


def format_group_table(t: GroupTable) -> str:
    """The Markdown table of one model's robustness by one grouping (as ``featcache evaluate --by`` prints it).

    Clean Avg. in percent, impacts in percent, each ``mean ± std over seeds [bootstrap interval]``; the last
    row is the largest gap, ``high − low`` in percentage points.

    Args:
        t: The table.

    Returns:
        The table.
    """
    attacks = [a for a in t.attacks if any(a in r.impacts for r in t.rows)]
    head = [t.grouping, "Utterances", "Clean Avg.", *(f"{a} impact" for a in attacks)]
    lines = ["| " + " | ".join(_esc(h) for h in head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in t.rows:
        cells = [_esc(r.group), str(r.n), _cell_md(r.accuracy, accuracy=True),
                 *(_cell_md(r.impacts.get(a), accuracy=False) for a in attacks)]
        lines.append("| " + " | ".join(cells) + " |")
    if t.gaps:
        cells = ["Largest gap", "", _gap_md(t.gaps.get(t.clean), accuracy=True),
                 *(_gap_md(t.gaps.get(a), accuracy=False) for a in attacks)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


SECTION_NOTE = ("Clean Avg. accuracy and each attack's impact on the utterances of each group (mean ± std over "
                "seeds; brackets: paired bootstrap interval over the group's utterances, resampled within each "
                "fold). Largest gap: the group with the highest value minus the group with the lowest, in "
                "percentage points, with the interval of that difference (the two groups are picked on the point "
                "estimates).")
"""The sentence under the section's heading."""


def _by_grouping(tables: Sequence[GroupTable]) -> dict[str, list[GroupTable]]:
    out: dict[str, list[GroupTable]] = {}
    for t in tables:
        out.setdefault(t.grouping, []).append(t)
    return out


def render_groups_md(tables: Sequence[GroupTable], *, level: int = 2) -> str:
    """The section in Markdown (for ``tables.md``).

    Args:
        tables: The tables.
        level: Heading level of the section.

    Returns:
        The Markdown, or "" with nothing to show.
    """
    if not tables:
        return ""
    h = "#" * level
    md = [f"{h} Groups", "", SECTION_NOTE, ""]
    for grouping, ts in _by_grouping(tables).items():
        md += [f"{h}# By {grouping}", ""]
        for t in ts:
            md += [f"{table_heading(t)}.", "", format_group_table(t), ""]
    return "\n".join(md)


def groups_summary(tables: Sequence[GroupTable]) -> str:
    """A few lines for ``summary.md``: per model and grouping, the clean gap and the attack whose impact
    differs most between groups.

    Args:
        tables: The tables.

    Returns:
        The Markdown, or "" with nothing to say.
    """
    lines = []
    for t in tables:
        parts = []
        acc = t.gaps.get(t.clean)
        if acc is not None:
            parts.append(f"clean Avg. {_gap_phrase(acc, accuracy=True)}")
        worst = max((g for c, g in t.gaps.items() if c != t.clean and math.isfinite(g.gap.stat.mean)),
                    key=lambda g: abs(g.gap.stat.mean), default=None)
        if worst is not None:
            parts.append(f"the impact that differs most is {worst.condition}'s, {_gap_phrase(worst, accuracy=False)}")
        if parts:
            lines.append(f"- **{t.model}** by {t.grouping}: " + "; ".join(parts) + ".")
    return "\n".join(["## Groups", "", *lines, ""]) if lines else ""


def _gap_phrase(gap: GroupGap, *, accuracy: bool) -> str:
    scale = 100.0 if accuracy else 1.0
    ci = gap.gap.ci
    if ci is None or not math.isfinite(ci.low):
        said = "no bootstrap interval"
    else:
        said = (f"{round(ci.confidence * 100)}% CI [{_signed(ci.low * scale)}, {_signed(ci.high * scale)}]"
                + (", excludes 0" if ci.excludes_zero else ", includes 0"))
    return (f"{_esc(gap.high)} − {_esc(gap.low)} {_signed(gap.gap.stat.mean * scale)} points ({said})")


def groups_part(tables: Sequence[GroupTable]) -> Part | None:
    """The Groups part of ``report.html``, in the details: one collapsible table per model and grouping.

    Args:
        tables: The tables.

    Returns:
        The part, or None with nothing to show.
    """
    if not tables:
        return None
    out = [f'<p class="muted">{inline(SECTION_NOTE)}</p>']
    for grouping, ts in _by_grouping(tables).items():
        key = "".join(ch if ch.isalnum() else "-" for ch in grouping)
        out.append(f'<div class="grouping" id="groups-{key}"><h3>By {inline(grouping)}</h3>')
        for t in ts:
            out.append(f'<details class="part"><summary>{inline(table_heading(t))}</summary>'
                       f'<div class="scroll">{markdown_to_html(format_group_table(t))}</div></details>')
        out.append("</div>")
    return Part("groups", "Groups", "\n".join(out), order=ORDER["groups"])


__all__ = ["GROUPS_FILE", "GROUPS_FORMAT", "GroupSection", "format_group_table", "groups_summary",
           "groups_part", "parse_group_names", "read_group_section", "render_groups_md", "section_tables",
           "table_heading"]
