"""The prompt-reading diagnostic's cell split (training/diagnostics.py) on known tokens."""

from __future__ import annotations

import pytest
import torch

from liquidgen.training.diagnostics import position_losses, summarize
from liquidgen.training.mixture import IGNORE_INDEX, MicroBatch
from liquidgen.vocab import VocabLayout

LAYOUT = VocabLayout(image_offset=10, codebook_size=8, boi_id=1, eoi_id=2, uncond_id=3)
BG = 10  # image code 0: a flat background
OBJ_A, OBJ_B = 15, 16  # image codes 5 and 6: object cells


def _batch(targets: list[int]) -> MicroBatch:
    t = torch.tensor([targets])
    return MicroBatch(input_ids=t.clone(), position_ids=torch.arange(len(targets))[None],
                      targets=t, tokens=len(targets))  # fmt: skip


def test_entry_cells_are_object_cells_after_a_background_cell() -> None:
    # <boi> then a raster of codes: an object enters at index 2 and again at 6 (after
    # background); index 1 is the first image token, an object entry too (after <boi>)
    targets = [LAYOUT.boi_id, OBJ_A, BG, OBJ_A, OBJ_B, BG, BG, OBJ_B, OBJ_A, LAYOUT.eoi_id]
    loss = torch.arange(len(targets), dtype=torch.float32)  # the loss of target i is i

    def token_losses(batch: MicroBatch) -> tuple[torch.Tensor, torch.Tensor]:
        keep = batch.targets[0] != IGNORE_INDEX
        return loss[keep], batch.targets[0][keep]

    sums = position_losses(token_losses, {"cond": [_batch(targets)]}, LAYOUT, {0})
    assert sums["cond/object"].tolist() == [1 + 3 + 4 + 7 + 8, 5]
    assert sums["cond/entry"].tolist() == [1 + 3 + 7, 3]
    assert sums["cond/background"].tolist() == [2 + 5 + 6, 3]


def test_summarize_reports_the_prompt_gain_per_part() -> None:
    sums = {
        "cond/object": torch.tensor([6.0, 3.0]),
        "uncond/object": torch.tensor([9.0, 3.0]),
        "cond/entry": torch.tensor([1.0, 1.0]),
        "uncond/entry": torch.tensor([4.0, 1.0]),
        "cond/background": torch.tensor([0.0, 0.0]),  # no tokens: no metric
    }
    metrics = summarize(sums)
    assert metrics["t2i-diag/object_gain"] == pytest.approx(1.0)
    assert metrics["t2i-diag/entry_gain"] == pytest.approx(3.0)
    assert "t2i-diag/cond/background" not in metrics
