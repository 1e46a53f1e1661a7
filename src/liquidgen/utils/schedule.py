"""The learning-rate schedule both trainers use: linear warm-up, then constant, cosine, or
warm-up/stable/decay."""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "constant", "wsd")


def scheduled_lr(
    step: int,
    *,
    peak: float = 1.0,
    schedule: str,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float,
    decay_fraction: float = 0.0,
) -> float:
    """Learning rate of optimiser step ``step`` (0-based) for a peak of ``peak``.

    Linear warm-up from ``peak / warmup_steps`` to ``peak`` over ``warmup_steps`` steps,
    then ``"constant"``; ``"cosine"`` decay to ``min_lr_ratio * peak`` at ``total_steps``;
    or ``"wsd"``: constant until the last ``decay_fraction`` of the steps, then a linear
    decay to ``min_lr_ratio * peak`` over them. With ``peak=1.0`` it is the multiplier of
    the peak rate. (The operations are ordered so that both trainers get the exact floats
    they computed before they shared this function.)
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    if schedule == "wsd":
        decay = max(int(total_steps * decay_fraction), 1)
        start = max(total_steps - decay, warmup_steps)
        if step < start:
            return peak
        frac = min((step - start + 1) / max(total_steps - start, 1), 1.0)
        return peak * (1.0 - (1.0 - min_lr_ratio) * frac)
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)
