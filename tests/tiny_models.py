"""Tiny transformers checkpoints built from configs (no downloads) for the tests."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] . , ! ? ' - this is a terrible stupid idea and i hate it miss my old friend so "
    "much why does the machine never work what wonderful day love wow that amazing news okay fine well"
).split()


def tiny_bert(path: Path, *, seed: int = 0) -> Path:
    """A 2-layer, 32-d BERT with a word-level WordPiece vocabulary."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(path)
    cfg = BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(seed)
    BertModel(cfg).save_pretrained(path)
    return path


def tiny_wav2vec2(path: Path, *, seed: int = 0, norm: str = "layer") -> Path:
    """A 2-layer, 32-d wav2vec 2.0 (frame rate 1/20 of the sample rate)."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), feat_extract_norm=norm,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=10,
                         do_stable_layer_norm=norm == "layer")
    torch.manual_seed(seed)
    Wav2Vec2Model(cfg).save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=norm == "layer").save_pretrained(path)
    return path


def tiny_whisper(path: Path, *, seed: int = 0) -> Path:
    """A 2-layer, 32-d Whisper (encoder and decoder) with its feature extractor, 80 mel bins."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    cfg = WhisperConfig(vocab_size=64, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                        max_source_positions=1500, max_target_positions=16, pad_token_id=1, bos_token_id=1,
                        eos_token_id=1, decoder_start_token_id=2)
    torch.manual_seed(seed)
    WhisperModel(cfg).save_pretrained(path)
    WhisperFeatureExtractor().save_pretrained(path)
    return path
