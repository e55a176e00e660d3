"""The commands a study prints: every "run this command" hint is built here from the study's own options
(:meth:`~featcache.options.StudyOptions.to_flags`), so a printed command, run as printed, makes exactly
the missing piece."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from featcache.study.core import Study

__all__ = ["command"]


def command(study: Study, stage: str, *, modality: str | None = None, fold: int | str | None = None,
            seed: int | None = None, variant: str | None = None, split: str | None = None) -> str:
    """The ``featcache`` command that makes a missing piece of this study, with every option it was
    given (:meth:`~featcache.options.StudyOptions.to_flags`), so that running it as printed makes
    exactly that piece.

    Args:
        study: The study.
        stage: ``extract``, ``finetune``, or a stage that takes the study's options (``train-heads``,
            ``ablate``, ``evaluate``).
        modality: The encoder (extract) or model (finetune) to run.
        fold: The fold of a fine-tuned entry or run (``all``: every fold, for ``extract``).
        seed: The seed of a fine-tuning run.
        variant: The variant to extract (printed last).
        split: The utterances of a fine-tuned fold to extract (``train``, ``all``, ...; default: the
            extract command's own); ignored for frozen backbones, whose entries hold every utterance.

    Returns:
        The command line, shell-quoted.
    """
    o = study.options.replace(cache_dir=str(study.store.root), corpus=study.corpus.name)
    args = ["featcache", stage]
    if stage == "extract":
        args += [*o.replace(frozen=None).to_flags(command="extract"), "--modality", str(modality)]
        args += ["--frozen"] if study.frozen else ["--finetuned", "--fold", str(fold)]
        if split is not None and not study.frozen:
            args += ["--split", split]
        args += ["--variant", str(variant)]
    elif stage == "finetune":
        args += [*o.to_flags(command="finetune"), "--modality", str(modality), "--fold", str(fold),
                 "--seed", str(seed)]
    else:
        args += o.replace(frozen=study.frozen, seeds=study.seeds).to_flags(always=("corpus", "cache_dir", "preset",
                                                                                 "frozen", "seeds"))
    return shlex.join(args)
