"""The parts of ``report.html``: the page is a list of parts, each one section in the Overview or the details.

A part is a section with an anchor, a heading and its HTML body; :func:`render_parts` writes the Overview's
parts first (what a reader sees on the first screen), then the details' parts, and the navigation that reaches
every one. A new section of the report (a layer heatmap, a group table, an ASR comparison) is one more
:class:`Part` in the list :func:`featcache.report.write.write_report` hands to the page, not a page rewritten.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Place = Literal["overview", "details"]
"""Where a part is shown: on the first screen, or below it (the tables, plots and examples on demand)."""


ORDER: dict[str, int] = {"overview": 0, "tables": 20, "answers": 30, "plots": 40, "layers": 50, "groups": 55,
                         "examples": 60, "browser": 70}
"""The ranks of the report's own parts: the Overview, then the tables, the other answers, the plots, the Layers
and Groups sections, the examples and the utterance browser."""


@dataclass(frozen=True)
class Part:
    """One section of ``report.html``.

    Attributes:
        key: Its anchor (the section's ``id``; unique on the page).
        title: Its heading and its label in the navigation.
        body: Its HTML, under the heading.
        place: ``overview`` or ``details``.
        order: Its rank within its place (stable for equal ranks). The page's own parts use
            :data:`ORDER`; a new part picks a rank between them.
    """

    key: str
    title: str
    body: str
    place: Place = "details"
    order: int = 50


def render_parts(parts: Sequence[Part]) -> tuple[str, str]:
    """The navigation and the sections of a list of parts, the Overview's parts first.

    Args:
        parts: The parts, in the order each place shows them.

    Returns:
        ``(nav, sections)``: the navigation's links (one per part) and the sections' HTML.

    Raises:
        ValueError: Two parts with one key (their links could not both land).
    """
    keys = [p.key for p in parts]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"report parts share a key: {', '.join(dup)}")
    ordered = sorted(parts, key=lambda p: (p.place != "overview", p.order))
    nav = "".join(f'<a href="#{html.escape(p.key)}">{html.escape(p.title)}</a>' for p in ordered)
    out = []
    for p in ordered:
        out.append(f'<section id="{html.escape(p.key)}" class="part {p.place}"><h2>{html.escape(p.title)}</h2>'
                   f"{p.body}</section>")
    return nav, "\n".join(out)


__all__ = ["ORDER", "Part", "Place", "render_parts"]
