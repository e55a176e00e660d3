"""The robustness report: the paper's tables, example tables, a plain-language summary and plots.

:func:`write_report` turns a :class:`~featcache.metrics.Predictions` table into a directory::

    report.html        one page to look at and listen to, offline: an overview first (the impact
                       heatmap, clean accuracy and UAR per model), the summary's answers, the tables
                       (sortable, with bootstrap intervals), the plots, Tables 7-8 with the masked words
                       marked and audio players, and an utterance browser
    audio/             the examples' clean and perturbed audio (16 kHz FLAC), when a corpus is given
    browser/           the browser's data, one script per (condition, session), loaded on demand
    tables.md          Tables 3-6 in the layout of Cohen et al. (2023), one table per extra fusion
                       head, and "Beyond the paper" for attacks the paper did not run
    tables.tex         the same tables, booktabs, ready to paste (needs \\usepackage{booktabs})
    table*.csv         the same tables, one CSV each
    examples.md        Tables 7-8: utterances the multimodal model gets right under an attack while
                       the unimodal model gets them wrong
    summary.md         clean accuracy and UAR per model, RQ1-RQ3 and the other questions each as a
                       line and a table (difference, interval, answer), affected-subset impacts
    results.csv        one row per (fold, seed, model, condition)
    summary.csv        one row per (model, condition)
    overview (.png and .svg): the impact of every attack on every model, as a heatmap
    impact_paper, impact_fusion, impact_beyond, severity_*, flip_rate, clean_accuracy (.png and .svg)
    layers.json        with a Layers section (layer sweeps, learned layer weights): its inputs, and
                       layers.csv, layer_weights.csv, layer_impact_*, layer_accuracy_*, layer_weights
    asr.json           with a Speech recognition section (conditions whose text a recogniser made): each
                       condition's word errors per utterance
    groups.json        with a Groups section (robustness by group, `featcache evaluate --by sex`): each
                       grouping's utterance -> group; the section's rows are in summary.csv

Accuracies are shown in percent; with more than one seed, Avg. and Impact read ``mean ± std`` over
seeds (sample std) and the session columns hold the mean over seeds. Conditions missing from the
predictions are left out; the tables never invent a row.

The pieces are usable on their own: :func:`build_tables` and :func:`render_markdown` /
:func:`render_latex` / :func:`write_table_csv`; :func:`select_examples`, :func:`example_tables` and
:func:`render_examples`; :func:`render_summary`; :func:`draw_plots`; :func:`write_browser`;
:func:`render_page`.

One module per job, each importing only those above it (and :mod:`featcache.metrics`, never the
other way round):

* :mod:`~featcache.report.specs` - the paper's table rows, sections, attack names and notes;
* :mod:`~featcache.report.tables` - :class:`Cell`, :class:`TableRow`, :class:`Table`, :func:`build_tables`;
* :mod:`~featcache.report.render` - Markdown, LaTeX and CSV of a table;
* :mod:`~featcache.report.examples` - the example tables (7-8);
* :mod:`~featcache.report.questions` - the research questions as compact tables;
* :mod:`~featcache.report.summary` - ``summary.md`` and the details' other answers;
* :mod:`~featcache.report.severity` - attack kinds run at several strengths;
* :mod:`~featcache.report.plots` - the plots (PNG and SVG);
* :mod:`~featcache.report.audio` - the examples' audio, replayed from the store's records;
* :mod:`~featcache.report.browser` - the utterance browser's data files;
* :mod:`~featcache.report.markup` - the report's Markdown as HTML;
* :mod:`~featcache.report.parts` - the parts of ``report.html`` and its navigation;
* :mod:`~featcache.report.overview` - the Overview (impact heatmap, clean accuracy per model, RQ1-RQ3);
* :mod:`~featcache.report.html` - ``report.html`` (its CSS and JavaScript are in ``assets/``);
* :mod:`~featcache.report.layers` - the Layers section (layer sweeps, learned layer weights);
* :mod:`~featcache.report.groups` - the Groups section (robustness by group);
* :mod:`~featcache.report.asr` - the Speech recognition section (word error rate of transcribed conditions);
* :mod:`~featcache.report.write` - :func:`write_report` and :class:`ReportPaths`.

Everything public is importable from :mod:`featcache.report` itself.
"""

from featcache.report.asr import ASR_FILE, AsrSection, asr_section, read_asr_section
from featcache.report.audio import AudioFiles, AudioSource, StoreAudio, write_audio
from featcache.report.browser import write_browser
from featcache.report.examples import (
    Example,
    ExampleRow,
    ExampleTable,
    example_tables,
    format_top,
    render_examples,
    render_examples_file,
    select_examples,
)
from featcache.report.groups import GROUPS_FILE, GroupSection, format_group_table, read_group_section, table_heading
from featcache.report.html import PageContent, mark_changes, render_page
from featcache.report.layers import LAYERS_FILE, LayerSection, read_layer_section
from featcache.report.plots import PLOT_DPI, Plot, draw_plots, write_plots
from featcache.report.render import latex_escape, render_latex, render_markdown, write_table_csv
from featcache.report.severity import Sweep, severity_sweeps
from featcache.report.specs import (
    ATTACK_NAMES,
    AUDIO_TABLE_ROWS,
    FUSION_NOTE,
    FUSION_TABLE_SECTIONS,
    TABLE_NOTE,
    TEXT_TABLE_ROWS,
)
from featcache.report.summary import render_summary
from featcache.report.tables import Cell, Table, TableRow, build_tables, scope_note
from featcache.report.write import ReportPaths, default_seeds_note, write_report

__all__ = [
    "ATTACK_NAMES",
    "AUDIO_TABLE_ROWS",
    "FUSION_NOTE",
    "FUSION_TABLE_SECTIONS",
    "GROUPS_FILE",
    "LAYERS_FILE",
    "PLOT_DPI",
    "TABLE_NOTE",
    "TEXT_TABLE_ROWS",
    "AudioFiles",
    "AudioSource",
    "Cell",
    "Example",
    "ExampleRow",
    "ExampleTable",
    "GroupSection",
    "LayerSection",
    "ASR_FILE",
    "AsrSection",
    "PageContent",
    "Plot",
    "ReportPaths",
    "StoreAudio",
    "Sweep",
    "Table",
    "TableRow",
    "build_tables",
    "default_seeds_note",
    "draw_plots",
    "example_tables",
    "format_group_table",
    "format_top",
    "latex_escape",
    "mark_changes",
    "read_group_section",
    "read_layer_section",
    "render_examples",
    "render_examples_file",
    "render_latex",
    "render_markdown",
    "render_page",
    "asr_section",
    "read_asr_section",
    "render_summary",
    "scope_note",
    "select_examples",
    "severity_sweeps",
    "table_heading",
    "write_audio",
    "write_browser",
    "write_plots",
    "write_report",
    "write_table_csv",
]
