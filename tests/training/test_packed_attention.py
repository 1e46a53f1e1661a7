"""Attention one packed document at a time equals transformers' masked attention."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config

from liquidgen.training.loss import TargetLM
from liquidgen.training.packed_attention import BUCKET, supports_packed_attention


def tiny_llama(kv_heads: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        vocab_size=97,
        max_position_embeddings=256,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).train()


def packed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of 96 positions: documents of 5, 40 (> BUCKET) and 33 tokens + padding that
    continues the last document's positions (as the trainer's collate pads), and one
    document filling a whole row."""
    lengths = [[5, 40, 33], [96]]
    positions = []
    for row in lengths:
        pos = torch.cat([torch.arange(n) for n in row])
        pad = 96 - len(pos)
        positions.append(torch.cat([pos, pos[-1] + 1 + torch.arange(pad)]))
    ids = torch.randint(0, 97, (2, 96), generator=torch.Generator().manual_seed(1))
    return ids, torch.stack(positions)


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_packed_attention_equals_the_masked_attention(kv_heads: int) -> None:
    """Logits and every parameter's gradient equal the sdpa path with transformers'
    block-diagonal packed mask (float32), for full and grouped-query attention."""
    assert BUCKET < 40  # the batch has a document longer than one bucket
    ids, positions = packed_batch()
    targets = torch.arange(ids.numel())
    results = []
    for packed in (False, True):
        model = tiny_llama(kv_heads)
        wrapper = TargetLM(model, packed=packed)
        logits = wrapper(ids, positions, targets)
        logits.square().mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        results.append((logits.detach(), grads))
        assert model.config._attn_implementation == "sdpa"  # restored after the forward
    (ref, ref_grads), (got, got_grads) = results
    assert wrapper.packed
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_models_with_other_attention_keep_their_own() -> None:
    """Sliding-window models are refused (warning) and train with their implementation."""
    assert supports_packed_attention(tiny_llama().config)
    sliding = Qwen2Config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=97,
        use_sliding_window=True,
        sliding_window=16,
        max_window_layers=0,
    )
    assert not supports_packed_attention(sliding)
    plain = Qwen2Config(
        hidden_size=32, num_attention_heads=4, num_hidden_layers=2, use_sliding_window=False
    )
    assert supports_packed_attention(plain)

    from transformers import Qwen2ForCausalLM

    with pytest.warns(UserWarning, match="own attention implementation"):
        wrapper = TargetLM(Qwen2ForCausalLM(sliding), packed=True)
    assert not wrapper.packed


def test_every_forward_attends_within_its_own_documents() -> None:
    """Consecutive forwards with other packings, their position ids written into the same
    memory (as a reused buffer or a recycled allocation would be), each equal the masked
    attention of their own documents: the plan is made per forward, never looked up by the
    ids tensor's address."""
    ids, positions = packed_batch()
    targets = torch.arange(ids.numel())
    model = tiny_llama().eval()
    reference, packed = TargetLM(model), TargetLM(model, packed=True)
    buffer = positions.clone()
    other = torch.cat([torch.arange(48), torch.arange(48)]).expand(2, -1)
    with torch.no_grad():
        for new in (positions, other, positions):
            buffer.numpy()[:] = new.numpy()  # same address, shape and version counter
            torch.testing.assert_close(
                packed(ids, buffer, targets), reference(ids, new, targets), rtol=1e-5, atol=1e-5
            )
    with pytest.raises(RuntimeError, match="inside use_packed_attention"):
        model.config._attn_implementation = "liquidgen_packed"
        model(input_ids=ids, position_ids=positions, use_cache=False)
