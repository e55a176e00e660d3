from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from featcache.errors import FeatcacheError
from featcache.heads.layers import LayerWeightedHead
from featcache.heads import (
    HEADS,
    GatedFusion,
    LateFusion,
    MLPBody,
    MultimodalHead,
    ScoreFusion,
    UnimodalHead,
    audio_head,
    build_head,
    head_config,
    head_from_config,
    load_head,
    save_head,
    text_head,
)

T_DIM, A_DIM, N = 12, 10, 4


def _inputs(batch: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, T_DIM, generator=g), torch.randn(batch, A_DIM, generator=g)


def _call(head: nn.Module, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    if isinstance(head, LayerWeightedHead):  # three text and two audio layers, each a different vector
        return head(torch.stack([text, 0.5 * text, -text], 1), torch.stack([audio, 2 * audio], 1))
    if isinstance(head, UnimodalHead):
        return head(text if head.modality == "text" else audio)
    return head(text, audio)


def _build(kind: str) -> nn.Module:
    torch.manual_seed(1)
    if kind == "weighted":  # layer weights in front of the paper's multimodal head
        inner = build_head("multimodal", text_dim=T_DIM, audio_dim=A_DIM, n_classes=N)
        head = build_head(kind, text_dim=None, audio_dim=None, n_classes=N, head=inner, text_layers=3, audio_layers=2)
        with torch.no_grad():
            for p in (head.text_layers.weights, head.audio_layers.weights):
                p.add_(torch.randn_like(p))
        return head
    return build_head(kind, text_dim=T_DIM, audio_dim=A_DIM, n_classes=N)


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_every_kind_maps_a_batch_to_logits(kind: str) -> None:
    head = _build(kind).eval()
    out = _call(head, *_inputs())
    assert out.shape == (5, N)
    assert torch.isfinite(out).all()


def test_body_outputs_256_features_with_relu_and_dropout_layout() -> None:
    body = MLPBody(T_DIM)
    assert body.out_dim == 256
    out = body(torch.randn(5, T_DIM))
    assert out.shape == (5, 256)
    assert (out >= 0).all()  # ReLU after the last layer
    assert [type(m) for m in body.layers] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU]
    dropped = MLPBody(T_DIM, dropout=0.2)
    assert [type(m) for m in dropped.layers] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout]
    assert all(m.p == 0.2 for m in dropped.layers if isinstance(m, nn.Dropout))


def test_paper_heads_have_the_paper_sizes() -> None:
    t, a = text_head(768, 4), audio_head(768, 4)
    for head in (t, a):
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == [(768, 512), (512, 256), (256, 4)]
    assert not any(isinstance(m, nn.Dropout) for m in t.modules())
    assert [m.p for m in a.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.2]
    mm = MultimodalHead(768, 512, 4)
    assert (mm.fusion[0].in_features, mm.fusion[0].out_features) == (512, 128)
    assert (mm.classifier.in_features, mm.classifier.out_features) == (128, 4)
    assert mm.audio_body.in_dim == 512 and mm.text_body.dropout == 0.0 and mm.audio_body.dropout == 0.2


def test_dropout_acts_only_in_training_mode() -> None:
    torch.manual_seed(0)
    head = audio_head(A_DIM, N)
    x = torch.randn(16, A_DIM)
    head.train()
    assert not torch.equal(head(x), head(x))
    head.eval()
    assert torch.equal(head(x), head(x))
    no_dropout = text_head(T_DIM, N).train()
    assert torch.equal(no_dropout(torch.ones(3, T_DIM)), no_dropout(torch.ones(3, T_DIM)))


@pytest.mark.parametrize("cls", [MultimodalHead, GatedFusion])
def test_modality_dropout_zeroes_one_modality_only_in_training(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    head = cls(T_DIM, A_DIM, N, audio_dropout=0.0, modality_dropout=1.0)
    text, audio = _inputs(64)
    head.eval()
    full = head(text, audio)
    no_text = head(torch.zeros_like(text), audio)
    no_audio = head(text, torch.zeros_like(audio))
    assert torch.equal(head(text, audio), full)  # never applied at eval
    head.train()
    out = head(text, audio)
    is_no_text = torch.isclose(out, no_text, atol=1e-6).all(dim=1)
    is_no_audio = torch.isclose(out, no_audio, atol=1e-6).all(dim=1)
    assert bool((is_no_text ^ is_no_audio).all())  # exactly one modality dropped per sample
    assert 10 < int(is_no_text.sum()) < 54  # both modalities get dropped


def test_modality_dropout_rate_matches_p() -> None:
    torch.manual_seed(0)
    head = MultimodalHead(T_DIM, A_DIM, N, audio_dropout=0.0, modality_dropout=0.3)
    text, audio = _inputs(4000, seed=3)
    full = head.eval()(text, audio)
    out = head.train()(text, audio)
    dropped = ~torch.isclose(out, full, atol=1e-6).all(dim=1)
    assert abs(dropped.float().mean().item() - 0.3) < 0.04


@pytest.mark.parametrize("weight", [0.5, 0.8, 0.0])
def test_late_fusion_is_the_weighted_mean_of_the_unimodal_softmaxes(weight: float) -> None:
    torch.manual_seed(0)
    t, a = text_head(T_DIM, N), audio_head(A_DIM, N)
    late = LateFusion(t, a, text_weight=weight)
    text, audio = _inputs(7)
    late.train()  # the unimodal heads stay in eval mode: no dropout
    out = late(text, audio)
    expected = weight * t(text).softmax(-1) + (1 - weight) * a(audio).softmax(-1)
    assert torch.allclose(out.softmax(-1), expected, atol=1e-6)
    assert torch.allclose(out.exp(), expected, atol=1e-6)
    assert torch.equal(out.argmax(-1), expected.argmax(-1))
    assert not [p for p in late.parameters() if p.requires_grad]


def test_score_fusion_trains_only_its_layer_and_starts_as_the_score_average() -> None:
    torch.manual_seed(0)
    t, a = text_head(T_DIM, N), audio_head(A_DIM, N)
    text, audio = _inputs(6)
    expected = (t.eval()(text) + a.eval()(audio)) / 2
    fusion = ScoreFusion(t, a).train()
    assert not t.training and not a.training
    assert torch.allclose(fusion(text, audio), expected, atol=1e-6)
    trainable = [n for n, p in fusion.named_parameters() if p.requires_grad]
    assert trainable == ["combine.weight", "combine.bias"]
    fusion(text, audio).sum().backward()
    assert all(p.grad is None for p in t.parameters())
    assert fusion.combine.weight.grad is not None
    probs = ScoreFusion(t, a, scores="probs")
    assert torch.allclose(probs(text, audio), (t(text).softmax(-1) + a(audio).softmax(-1)) / 2, atol=1e-6)


@pytest.mark.parametrize(("gate", "width"), [("scalar", 1), ("vector", 256)])
def test_gated_fusion_gate_is_a_per_sample_sigmoid(gate: str, width: int) -> None:
    torch.manual_seed(0)
    head = GatedFusion(T_DIM, A_DIM, N, gate=gate).eval()  # type: ignore[arg-type]
    text, audio = _inputs(5)
    z = head.gate_values(text, audio)
    assert z.shape == (5, width)
    assert ((z > 0) & (z < 1)).all()
    assert z.std() > 0  # depends on the sample


def test_multimodal_from_unimodal_copies_the_bodies() -> None:
    torch.manual_seed(0)
    t, a = text_head(T_DIM, N), audio_head(A_DIM, N)
    mm = MultimodalHead.from_unimodal(t, a)
    text, audio = _inputs(3)
    assert torch.equal(mm.text_body(text), t.eval().features(text))
    assert torch.equal(mm.eval().audio_body(audio), a.eval().features(audio))
    assert mm.audio_body.dropout == 0.2


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_config_roundtrip_rebuilds_the_same_architecture(kind: str) -> None:
    head = _build(kind)
    cfg = head_config(head)
    cfg = json.loads(json.dumps(cfg))  # JSON-able
    rebuilt = head_from_config(cfg)
    assert type(rebuilt) is type(head)
    assert head_config(rebuilt) == cfg
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in head.state_dict().items()}


def test_config_keeps_non_default_options() -> None:
    head = build_head(
        "gated", text_dim=8, audio_dim=6, n_classes=3, hidden=(16, 8), gate="vector", modality_dropout=0.25
    )
    rebuilt = head_from_config(head_config(head))
    assert isinstance(rebuilt, GatedFusion)
    assert rebuilt.gate == "vector" and rebuilt.modality_dropout == 0.25 and rebuilt.text_body.hidden == (16, 8)


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_save_load_roundtrip_gives_identical_outputs(kind: str, tmp_path: Path) -> None:
    head = _build(kind)
    if isinstance(head, ScoreFusion):
        with torch.no_grad():
            head.combine.weight.add_(torch.randn_like(head.combine.weight))
    save_head(head, tmp_path / "h")
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_head(tmp_path / "h")
    assert not loaded.training
    text, audio = _inputs(5)
    assert torch.equal(_call(head.eval(), text, audio), _call(loaded, text, audio))


def _one_line(exc: pytest.ExceptionInfo[FeatcacheError], *needles: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_load_errors_are_one_line_and_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FeatcacheError) as exc:
        load_head(tmp_path / "missing")
    _one_line(exc, str(tmp_path / "missing" / "config.json"))

    save_head(text_head(T_DIM, N), tmp_path / "h")
    weights = tmp_path / "h" / "model.safetensors"
    weights.write_bytes(b"\x00garbage" * 5)
    with pytest.raises(FeatcacheError) as exc:
        load_head(tmp_path / "h")
    _one_line(exc, str(weights), "corrupt")

    weights.unlink()
    with pytest.raises(FeatcacheError) as exc:
        load_head(tmp_path / "h")
    _one_line(exc, str(weights), "not found")

    (tmp_path / "h" / "config.json").write_text("{not json")
    with pytest.raises(FeatcacheError) as exc:
        load_head(tmp_path / "h")
    _one_line(exc, "config.json", "corrupt")


def test_load_rejects_weights_of_another_architecture(tmp_path: Path) -> None:
    save_head(text_head(T_DIM, N), tmp_path / "a")
    save_head(text_head(T_DIM + 1, N), tmp_path / "b")
    (tmp_path / "b" / "config.json").write_bytes((tmp_path / "a" / "config.json").read_bytes())
    with pytest.raises(FeatcacheError) as exc:
        load_head(tmp_path / "b")
    _one_line(exc, str(tmp_path / "b" / "model.safetensors"))


def test_build_head_rejects_bad_requests() -> None:
    with pytest.raises(ValueError, match="unknown head kind"):
        build_head("attention", text_dim=4, audio_dim=4, n_classes=2)
    with pytest.raises(ValueError, match="audio_dim"):
        build_head("multimodal", text_dim=4, audio_dim=None, n_classes=2)
    with pytest.raises(ValueError, match="dropout"):
        build_head("audio", text_dim=None, audio_dim=4, n_classes=2, dropout=1.5)
    with pytest.raises(ValueError, match="not a featcache head config"):
        head_from_config({"kind": "text"})


@pytest.mark.parametrize("kind", ["multimodal", "gated", "late", "score"])
def test_split_forward_equals_forward_in_eval_mode(kind: str, tmp_path: Path) -> None:
    head = _build(kind)
    save_head(head, tmp_path / "h")
    for h in (head.eval(), load_head(tmp_path / "h")):
        text, audio = _inputs(7, seed=3)
        joined = h.join(h.encode("text", text), h.encode("audio", audio))
        assert torch.allclose(h(text, audio), joined, atol=1e-6, rtol=0)
        other = _inputs(7, seed=4)[1]  # only the audio side changes: the encoded text is reused
        assert torch.allclose(h(text, other), h.join(h.encode("text", text), h.encode("audio", other)), atol=1e-6)


def test_loaded_heads_keep_trainability_and_hold_real_tensors(tmp_path: Path) -> None:
    head = _build("score")
    save_head(head, tmp_path / "h")
    loaded = load_head(tmp_path / "h")
    assert not any(p.is_meta for p in loaded.parameters())
    trainable = sorted(n for n, p in loaded.named_parameters() if p.requires_grad)
    assert trainable == ["combine.bias", "combine.weight"]


def test_the_same_tensors_and_metadata_give_the_same_bytes(tmp_path: Path) -> None:
    """safetensors orders the metadata as its hash map iterates; featcache's files are sorted, so two runs
    that save the same tensors write the same bytes (and they read back the same)."""
    from safetensors import safe_open

    from featcache.heads import load_tensors, save_tensors

    tensors = {"b.weight": torch.randn(4, 3), "a.bias": torch.randn(4), "c": torch.arange(5)}
    metadata = {"format": "pt", "kind": "text", "epoch": "3", "loop": "2", "z": "last", "a": "first"}
    files = set()
    for i in range(12):
        path = tmp_path / f"t{i}.safetensors"
        save_tensors(path, tensors, metadata=metadata)
        files.add(path.read_bytes())
    assert len(files) == 1
    back = load_tensors(path, what="test tensors")
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == metadata
