"""Classification heads and fusion heads applied to pooled encoder vectors.

The heads follow Cohen et al. (2023), sections 4.1-4.3:

* text: [CLS] vector -> FC 512 (ReLU) -> FC 256 (ReLU) -> FC ``n_classes`` (softmax in the loss);
* audio: mean-pooled vector -> FC 512 (ReLU, dropout 0.2) -> FC 256 (ReLU, dropout 0.2) -> FC ``n_classes``;
* multimodal: the two 256-d body outputs concatenated (512) -> FC 128 (ReLU) -> FC ``n_classes``.

Every head returns *logits*; softmax is applied by the loss and by :func:`featcache.train.predict`.
Input sizes follow the backbone's hidden size (384 for MiniLM, 512 for Whisper base, 768 for
BERT/wav2vec2). The heads contain no encoder: they run either on top of an encoder (end-to-end
fine-tuning) or on vectors read from the feature store.

Fusion variants for ablations, all called as ``head(text_vec, audio_vec)``. Each also splits its forward
pass into ``encode(modality, vec)`` (the part that sees one input) and ``join(text_out, audio_out)``, so
an evaluation that varies one modality reuses the other's encoded input:

* :class:`MultimodalHead` - the paper's feature-level fusion, with optional *modality dropout*;
* :class:`LateFusion` - weighted average of two trained unimodal heads' probabilities;
* :class:`ScoreFusion` - a learned linear layer over two frozen unimodal heads' scores;
* :class:`GatedFusion` - a learned per-sample sigmoid gate mixing projected text and audio features.

A head is re-created from a JSON config (:func:`head_config` / :func:`head_from_config`) and saved
without pickle as ``model.safetensors`` + ``config.json`` (:func:`save_head` / :func:`load_head`).
"""

from __future__ import annotations

from featcache.heads.bodies import MLPBody, UnimodalHead, audio_head, text_head
from featcache.heads.files import (
           CONFIG_FILE,
           WEIGHTS_FILE,
           HeadFileError,
           load_head,
           load_tensors,
           save_head,
           save_tensors,
)
from featcache.heads.fusion import GatedFusion, LateFusion, MultimodalHead, ScoreFusion
from featcache.heads.registry import (
           CONFIG_FORMAT,
           CONFIG_VERSION,
           HEADS,
           build_head,
           head_config,
           head_from_config,
)

__all__ = ["CONFIG_FILE", "CONFIG_FORMAT", "CONFIG_VERSION", "HEADS", "WEIGHTS_FILE", "GatedFusion", "HeadFileError",
           "LateFusion", "MLPBody", "MultimodalHead", "ScoreFusion", "UnimodalHead", "audio_head", "build_head",
           "head_config", "head_from_config", "load_head", "load_tensors", "save_head", "save_tensors", "text_head"]
