"""The data mixture: packing isolation, determinism, exact resume, ratios, distributed sharding."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import numpy as np
import pytest
import torch
from transformers import (
    CohereConfig,
    CohereForCausalLM,
    Gemma2Config,
    Gemma2ForCausalLM,
    GemmaConfig,
    GemmaForCausalLM,
    GraniteConfig,
    GraniteForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from liquidgen.errors import ConfigError
from liquidgen.formats import IGNORE_INDEX
from liquidgen.training.loss import TargetLM
from liquidgen.training.mixture import (
    DistributedBatcher,
    Mixture,
    collate,
    example_arrays,
    make_row,
)

VOCAB = 97


@dataclasses.dataclass
class FakeExample:
    input_ids: list[int]
    labels: list[int]
    modality: str


class FakeSource:
    """Record i is a sequence whose tokens encode (source, record) and whose length varies."""

    def __init__(self, name: str, tag: int, size: int, loss_from: int = 0) -> None:
        self.name = name
        self.modality = "text"
        self.tag = tag
        self.size = size
        self.loss_from = loss_from

    def __len__(self) -> int:
        return self.size

    def example(self, index: int, rng: random.Random) -> FakeExample:
        length = 3 + (index * 7 + self.tag) % 11
        ids = [self.tag * 1000 + index, *[rng.randrange(VOCAB) for _ in range(length - 1)]]
        labels = [IGNORE_INDEX] * self.loss_from + ids[self.loss_from :]
        return FakeExample(ids, labels, self.modality)


def _mixture(seed: int = 0, packing: bool = True, seq_len: int = 32) -> Mixture:
    sources = [FakeSource("a", 1, 50), FakeSource("b", 2, 30, loss_from=2), FakeSource("c", 3, 7)]
    return Mixture(sources, [3.0, 2.0, 1.0], seq_len=seq_len, packing=packing, seed=seed)


def _rows(mixture: Mixture, n: int) -> list[tuple[list[int], list[int], list[int]]]:
    return [
        (r.input_ids.tolist(), r.targets.tolist(), r.position_ids.tolist())
        for r in (mixture.next_row() for _ in range(n))
    ]


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    assert _rows(_mixture(0), 20) == _rows(_mixture(0), 20)
    assert _rows(_mixture(0), 20) != _rows(_mixture(1), 20)


def test_resume_from_state_continues_exactly() -> None:
    reference = _mixture()
    rows = _rows(reference, 40)
    first = _mixture()
    _rows(first, 17)
    state = first.state_dict()
    resumed = _mixture()
    resumed.load_state_dict(state)
    assert _rows(resumed, 23) == rows[17:]


def test_packing_fills_rows_and_restarts_positions() -> None:
    mixture = _mixture(seq_len=32)
    for _ in range(30):
        row = mixture.next_row()
        assert len(row.input_ids) <= 32
        starts = np.flatnonzero(row.position_ids == 0)
        assert len(starts) == row.examples >= 1
        # the target of each example's last token is -100: no example predicts the next one
        ends = [*starts[1:] - 1, len(row.input_ids) - 1]
        assert all(row.targets[e] == IGNORE_INDEX for e in ends)
    assert np.mean([_mixture(seq_len=32).next_row().examples for _ in range(1)]) >= 1
    packed = sum(r.examples > 1 for r in (mixture.next_row() for _ in range(30)))
    assert packed > 20  # examples are 3-13 tokens: most rows hold several


def test_padding_mode_one_example_per_row() -> None:
    mixture = _mixture(packing=False)
    assert all(mixture.next_row().examples == 1 for _ in range(20))


def test_targets_are_shifted_labels_inside_an_example() -> None:
    example = FakeExample([5, 6, 7, 8], [IGNORE_INDEX, 6, 7, 8], "text")
    ids, targets = example_arrays(example, seq_len=10)
    assert ids.tolist() == [5, 6, 7, 8]
    assert targets.tolist() == [6, 7, 8, IGNORE_INDEX]
    ids, targets = example_arrays(
        example, seq_len=2
    )  # truncated: the last kept token still has a target
    assert ids.tolist() == [5, 6] and targets.tolist() == [6, 7]


def test_ratios_and_epochs() -> None:
    mixture = _mixture(seq_len=16)
    for _ in range(3000):
        mixture.next_row()
    taken = np.array(mixture.taken, dtype=float)
    assert np.allclose(taken / taken.sum(), [0.5, 1 / 3, 1 / 6], atol=0.02)
    # every full epoch of source "c" (7 records) visits each record exactly once
    source_c = mixture.sources[2]
    seen = [mixture._record_of(2, m) for m in range(7 * 3)]
    for epoch in range(3):
        assert sorted(seen[epoch * 7 : (epoch + 1) * 7]) == list(range(len(source_c)))


def test_distributed_ranks_split_the_global_batch_without_duplicates() -> None:
    single = DistributedBatcher(
        _mixture(), global_batch=8, micro_batch=2, rank=0, world_size=1, pad_id=-1
    )
    ranks = [
        DistributedBatcher(
            _mixture(), global_batch=8, micro_batch=2, rank=r, world_size=2, pad_id=-1
        )
        for r in (0, 1)
    ]
    for _ in range(3):
        whole = single.next_step()
        parts = [b.next_step() for b in ranks]
        assert {p.global_targets for p in parts} == {whole.global_targets}

        def rows(batches):  # every real row as a tuple of its tokens (padding is -1 here)
            return [
                tuple(t for t in ids.tolist() if t != -1) for mb in batches for ids in mb.input_ids
            ]

        mine = [rows(p.micro_batches) for p in parts]
        # each global row goes to exactly one rank: together they are the single-process batch
        assert Counter(mine[0] + mine[1]) == Counter(rows(whole.micro_batches))
        assert len(mine[0]) == len(mine[1]) == 4
    assert ranks[0].state_dict() == ranks[1].state_dict() == single.state_dict()


def _tiny(cls, config_cls, attn: str, **extra) -> torch.nn.Module:
    config = config_cls(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        vocab_size=VOCAB,
        attn_implementation=attn,
        **extra,
    )
    torch.manual_seed(0)
    return cls(config).eval()


MODELS = [
    (LlamaForCausalLM, LlamaConfig, "sdpa", {}),
    (LlamaForCausalLM, LlamaConfig, "eager", {}),
    (Qwen2ForCausalLM, Qwen2Config, "sdpa", {}),
    (GemmaForCausalLM, GemmaConfig, "sdpa", {}),
    (
        Gemma2ForCausalLM,
        Gemma2Config,
        "eager",
        {"final_logit_softcapping": 30.0, "sliding_window": 4},
    ),
    (CohereForCausalLM, CohereConfig, "sdpa", {"logit_scale": 0.5}),
    (GraniteForCausalLM, GraniteConfig, "sdpa", {"logits_scaling": 4.0}),
]


@pytest.mark.parametrize(
    ("cls", "config_cls", "attn", "extra"), MODELS, ids=lambda v: getattr(v, "__name__", v)
)
@torch.no_grad()
def test_packed_row_logits_equal_each_document_alone(cls, config_cls, attn, extra) -> None:
    model = _tiny(cls, config_cls, attn, **extra)
    wrapper = TargetLM(model)
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, VOCAB, n) for n in (5, 9, 3)]
    rows = [make_row([(d, d) for d in docs]), make_row([(docs[1], docs[1])])]  # packed + padded row
    batch = collate(rows, pad_id=0)
    every = torch.arange(batch.input_ids.numel())
    packed = wrapper(batch.input_ids, batch.position_ids, every).view(2, -1, VOCAB)
    # the same row without per-document positions: documents would see each other
    leaky = wrapper(
        batch.input_ids, torch.arange(batch.input_ids.shape[1]).expand(2, -1), every
    ).view(2, -1, VOCAB)
    offset = 0
    for doc in docs:
        alone = model(input_ids=torch.as_tensor(doc)[None]).logits[0]
        torch.testing.assert_close(
            packed[0, offset : offset + len(doc)], alone, rtol=1e-5, atol=1e-5
        )
        if offset:
            assert not torch.allclose(leaky[0, offset : offset + len(doc)], alone, atol=1e-3)
        offset += len(doc)
    alone = model(input_ids=torch.as_tensor(docs[1])[None]).logits[0]
    torch.testing.assert_close(packed[1, : len(docs[1])], alone, rtol=1e-5, atol=1e-5)
    # target-only logits are the model's own logits at those positions
    wrapper.verify(docs[0].tolist())
    index = torch.tensor([0, 4, 7, 16])
    torch.testing.assert_close(
        wrapper(batch.input_ids, batch.position_ids, index), packed.reshape(-1, VOCAB)[index]
    )


def test_cutting_an_image_example_warns_once_per_source() -> None:
    long_images = FakeSource("img", 4, 5)
    long_images.modality = "t2i"
    mixture = Mixture([long_images], [1.0], seq_len=4, packing=True, seed=0)
    with pytest.warns(UserWarning, match=r"'img'.*cut to data.seq_len=4") as caught:
        for _ in range(5):
            mixture.next_row()
    assert len(caught) == 1


def test_verify_refuses_a_head_it_does_not_reproduce() -> None:
    model = _tiny(LlamaForCausalLM, LlamaConfig, "sdpa")
    model.config.logit_scale = 0.5  # Llama ignores it; the wrapper would apply it
    with pytest.raises(ConfigError, match="target-only LM head differs"):
        TargetLM(model).verify([1, 2, 3])
