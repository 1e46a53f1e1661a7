"""Speculative Jacobi decoding (SJD) of an image span, lossless in distribution.

Teng et al. 2024, "Accelerating Auto-regressive Text-to-Image Generation with Training-free
Speculative Jacobi Decoding": keep a window of draft tokens after the last accepted token,
run them through the model in *one* forward (with the KV cache of everything accepted), and
accept a prefix of them with the speculative-sampling rule; the rejected tail is re-drafted
from the distributions that same forward predicted (a probabilistic Jacobi iteration). No
draft model, no training.

One iteration, with ``y`` the last accepted token (not yet in the cache) and drafts
``d_0 .. d_{W-2}`` drawn from distributions ``q_0 .. q_{W-2}``:

1. forward ``[y, d_0, .., d_{W-2}]`` (CFG: the same tokens on the conditional and the
   unconditional row); ``p_j`` = Liquid's processed distribution (CFG mix, temperature,
   top-k, top-p: :meth:`ImageSampling.code_probs`) at input position ``j``, i.e. the true
   next-token distribution for ``d_j`` if ``d_0 .. d_{j-1}`` are accepted;
2. for ``j = 0, 1, ..``: accept ``d_j`` with probability ``min(1, p_j(d_j) / q_j(d_j))``; at
   the first rejection draw the replacement from the residual ``max(0, p_j - q_j)``
   (normalised) and stop; if all are accepted draw a bonus token from ``p_{W-1}``;
3. keep the cache slots of ``y`` and the accepted drafts, rewind the rest; the new drafts are
   drawn from ``p_{j+1} .. p_{W-1}`` of this forward (their context had the rejected token:
   still a valid draft distribution, just a guess), the window refilled with tokens drawn
   uniformly from the codebook (``q`` uniform).

Why it is lossless: for any draft distribution ``q`` from which the draft token was drawn,
independently of the acceptance coin, ``P(token = x) = min(p(x), q(x)) + (1 - sum min(p, q))
* max(0, p(x) - q(x)) / sum max(0, p - q) = p(x)`` — the speculative-sampling identity
(Leviathan et al. 2023, Chen et al. 2023), which SJD applies with the previous Jacobi
iteration as the draft. So every token is distributed exactly as in plain sampling given the
tokens before it, and the image as a whole is too (tested with a chi-square test in
``tests/sampling/test_jacobi.py``). With the temperature going to 0 every ``p_j`` is one-hot
and the codes are exactly greedy decoding's. The draws are not the same *numbers* as plain
sampling for a seed (the random stream is used differently).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from liquidgen.inference.sampling import ImageSampling, sample_from_probs
from liquidgen.inference.static import StaticDecoder
from liquidgen.vocab import VocabLayout

ProgressFn = Callable[[int, int], None]


def _probs(logits: torch.Tensor, sampling: ImageSampling) -> torch.Tensor:
    """Processed code distributions ``(T, K)`` from the engine's ``(R, T, K)`` logits."""
    cond = logits[0]  # (T, K)
    uncond = logits[1] if sampling.uses_cfg else None
    return sampling.code_probs(cond, uncond).double()  # (T, K)


def _draw(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One code per row of ``probs`` ``(T, K)`` from the single per-image generator."""
    return sample_from_probs(probs, generator)


def speculative_accept(
    drafts: torch.Tensor,
    draft_probs: torch.Tensor,
    target_probs: torch.Tensor,
    generator: torch.Generator,
    limit: int,
) -> tuple[int, torch.Tensor | None]:
    """The acceptance rule over a window: how many leading ``drafts`` ``(D,)`` are accepted
    (at most ``limit``) and, at the first rejection, the replacement drawn from the residual.

    ``draft_probs`` ``(D, K)``: the distributions the drafts were drawn from;
    ``target_probs`` ``(D + 1, K)``: row ``j`` the target distribution of draft ``j`` (the last
    row is the bonus distribution after all drafts). Returns ``(accepted, replacement)``;
    ``replacement`` is ``None`` when no draft was rejected within ``limit``.
    """
    for j in range(min(limit, drafts.shape[0])):
        x = int(drafts[j])
        p, q = float(target_probs[j, x]), float(draft_probs[j, x])
        u = float(torch.rand(1, dtype=torch.float64, generator=generator))
        if q > 0 and u * q < p:
            continue
        residual = (target_probs[j] - draft_probs[j]).clamp(min=0)  # (K,)
        if not float(residual.sum()) > 0:  # p <= q everywhere up to rounding: p itself
            residual = target_probs[j]
        return j, _draw(residual[None], generator)[0]
    return min(limit, drafts.shape[0]), None


def coupled_redraft(
    old: torch.Tensor, old_probs: torch.Tensor, new_probs: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """New drafts ``(M,)`` from ``new_probs`` ``(M, K)``, each coupled with the old draft at its
    position (``old`` ``(L,)`` drawn from ``old_probs``, ``L <= M``; positions past ``L`` are
    drawn independently).

    Maximal coupling, which is the acceptance rule itself: keep the old draft ``x`` with
    probability ``min(1, new(x) / old(x))``, else draw from the residual ``max(0, new - old)``.
    As ``x ~ old``, the result is distributed exactly as ``new`` (the speculative-sampling
    identity), so it is a valid draft for the next window's acceptance test, which needs
    only that a draft be drawn from the distribution it is tested against; but where the
    refined distribution barely moved, the draft stays the same token, so the window's later
    positions keep the context their distributions were computed in and more of them are
    accepted (the coupled drafts of later SJD variants). Independent re-draws change the
    drafts at every iteration and throw that context away.
    """
    kept = old.shape[0]
    out = []
    for j in range(kept):
        p = new_probs[j : j + 1]  # (1, K)
        _, replacement = speculative_accept(
            old[j : j + 1], old_probs[j : j + 1], p.expand(2, -1), generator, 1
        )
        out.append(old[j] if replacement is None else replacement)
    if new_probs.shape[0] > kept:
        out.extend(_draw(new_probs[kept:], generator).unbind())
    return torch.stack(out) if out else old.new_zeros(0)


def jacobi_image_codes(
    engine: StaticDecoder,
    rows: list[list[int]],
    layout: VocabLayout,
    sampling: ImageSampling,
    n_tokens: int,
    generator: torch.Generator,
    *,
    window: int,
    progress: ProgressFn | None = None,
    coupled: bool = True,
    row_width: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Draw ``n_tokens`` codes of one image (``rows``: its conditional prompt, then the
    unconditional one when guidance is on) with SJD; returns the codes ``(n_tokens,)`` and
    the number of forward passes (the prefill included). ``coupled``: re-draft the window by
    :func:`coupled_redraft` (the default) instead of independent draws. ``row_width``: the
    code grid's width; new slots are then drafted as the code one row up (a point-mass
    draft, accepted with probability ``p(code)``) instead of a uniform random code."""
    k = layout.codebook_size
    n_drafts = window - 1
    uniform = torch.full((k,), 1.0 / k, dtype=torch.float64)
    logits, positions = engine.prefill(rows, layout.padding_id)  # (R, K), (R,)
    forwards = 1
    codes = [int(_draw(_probs(logits[:, None], sampling)[:1], generator)[0])]
    if progress is not None:
        progress(1, n_tokens)

    def fresh(count: int, known: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Drafts for new slots at code indices len(known) ..: the code one row up where
        ``row_width`` is given and it exists (drawn from a point mass: its probability is
        1), else a uniform random code."""
        drafts, probs = [], []
        for i in range(count):
            above = len(known) + i - row_width if row_width else -1
            if above >= 0:
                code = known[above] if above < len(known) else int(drafts[above - len(known)])
                drafts.append(torch.tensor(code))
                probs.append(torch.nn.functional.one_hot(torch.tensor(code), k).double())
            else:
                drafts.append(torch.randint(0, k, (), generator=generator))
                probs.append(uniform)
        if not drafts:
            return torch.zeros(0, dtype=torch.long), uniform.new_zeros(0, k)
        return torch.stack(drafts), torch.stack(probs)

    drafts, draft_probs = fresh(n_drafts, codes)  # (D,), (D, K)
    offsets = torch.arange(window, device=positions.device)  # (W,)
    while len(codes) < n_tokens:
        inputs = torch.cat([torch.tensor([codes[-1]]), drafts])  # (W,)
        tokens = layout.codes_to_tokens(inputs)[None].expand(engine.rows, -1)  # (R, W)
        logits = engine.window(tokens, positions[:, None] + offsets)  # (R, W, K)
        forwards += 1
        target = _probs(logits, sampling).cpu()  # (W, K)
        accepted, replacement = speculative_accept(
            drafts, draft_probs, target, generator, limit=n_tokens - len(codes)
        )
        codes += drafts[:accepted].tolist()
        if len(codes) < n_tokens:
            if replacement is None:  # every draft accepted: the bonus token
                replacement = _draw(target[accepted][None], generator)[0]
            codes.append(int(replacement))
        engine.rewind(n_drafts - accepted)  # keep y and the accepted drafts
        positions = positions + 1 + accepted
        if progress is not None:
            progress(min(len(codes), n_tokens), n_tokens)
        # Next window: refined drafts from this forward, then fresh uniform ones.
        refined = target[accepted + 1 :]  # (W - 1 - accepted, K)
        n_fresh = n_drafts - refined.shape[0]
        if coupled:  # keep an untested old draft where the refined distribution allows it
            old = slice(accepted + 1, n_drafts)  # drafts never tested, at the same positions
            kept = coupled_redraft(drafts[old], draft_probs[old], refined, generator)
        elif refined.shape[0]:
            kept = _draw(refined, generator)
        else:
            kept = torch.zeros(0, dtype=torch.long)
        new, new_probs = fresh(n_fresh, codes + kept.tolist())
        drafts = torch.cat([kept, new])
        draft_probs = torch.cat([refined, new_probs])
    return torch.tensor(codes[:n_tokens], dtype=torch.long), forwards
