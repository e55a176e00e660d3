"""The robustness report: the paper's tables, example tables, a plain-language summary and plots.

:func:`write_report` turns a :class:`~featcache.metrics.Predictions` table into a directory::

    tables.md          Tables 3-6 in the layout of Cohen et al. (2023), one table per extra fusion
                       head, and "Beyond the paper" for attacks the paper did not run
    tables.tex         the same tables, booktabs, ready to paste (needs \\usepackage{booktabs})
    table*.csv         the same tables, one CSV each
    examples.md        Tables 7-8: utterances the multimodal model gets right under an attack while
                       the unimodal model gets them wrong
    summary.md         RQ1-RQ3 answered from the numbers, affected-subset impacts, additivity
    results.csv        one row per (fold, seed, model, condition)
    summary.csv        one row per (model, condition)
    impact.png, clean_accuracy.png, flip_rate.png

Accuracies are shown in percent; with more than one seed, Avg. and Impact read ``mean ± std`` over
seeds (sample std) and the session columns hold the mean over seeds. Conditions missing from the
predictions are left out; the tables never invent a row.

The pieces are usable on their own: :func:`build_tables` and :func:`render_markdown` /
:func:`render_latex` / :func:`write_table_csv`; :func:`select_examples` and
:func:`render_examples`; :func:`render_summary`; :func:`write_plots`.

One module per job, each importing only those above it (and :mod:`featcache.metrics`, never the
other way round):

* :mod:`~featcache.report.specs` - the paper's table rows, sections, attack names and notes;
* :mod:`~featcache.report.tables` - :class:`Cell`, :class:`TableRow`, :class:`Table`, :func:`build_tables`;
* :mod:`~featcache.report.render` - Markdown, LaTeX and CSV of a table;
* :mod:`~featcache.report.examples` - the example tables (7-8);
* :mod:`~featcache.report.summary` - the plain-language summary;
* :mod:`~featcache.report.plots` - the PNG plots;
* :mod:`~featcache.report.write` - :func:`write_report` and :class:`ReportPaths`.

Everything public is importable from :mod:`featcache.report` itself.
"""

from featcache.report.examples import Example, ExampleRow, format_top, render_examples, select_examples
from featcache.report.plots import PLOT_DPI, write_plots
from featcache.report.render import latex_escape, render_latex, render_markdown, write_table_csv
from featcache.report.specs import (
    ATTACK_NAMES,
    AUDIO_TABLE_ROWS,
    FUSION_NOTE,
    FUSION_TABLE_SECTIONS,
    TABLE_NOTE,
    TEXT_TABLE_ROWS,
)
from featcache.report.summary import render_summary
from featcache.report.tables import Cell, Table, TableRow, build_tables
from featcache.report.write import ReportPaths, default_seeds_note, write_report

__all__ = [
    "ATTACK_NAMES",
    "AUDIO_TABLE_ROWS",
    "FUSION_NOTE",
    "FUSION_TABLE_SECTIONS",
    "PLOT_DPI",
    "TABLE_NOTE",
    "TEXT_TABLE_ROWS",
    "Cell",
    "Example",
    "ExampleRow",
    "ReportPaths",
    "Table",
    "TableRow",
    "build_tables",
    "default_seeds_note",
    "format_top",
    "latex_escape",
    "render_examples",
    "render_latex",
    "render_markdown",
    "render_summary",
    "select_examples",
    "write_plots",
    "write_report",
    "write_table_csv",
]
