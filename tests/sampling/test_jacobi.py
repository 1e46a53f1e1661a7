"""Speculative Jacobi decoding: lossless in distribution, greedy-exact, fewer forwards.

Statistical tests use a chi-square goodness-of-fit test at significance 0.001 against the
*exact* distribution (computed by enumerating every image of a small grid with the plain
sampler's probabilities). The seeds are fixed, so the tests are deterministic; the
significance only says how unlikely a failure of a correct sampler would be.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from liquidgen.inference.generation import generate_image_tokens
from liquidgen.inference.jacobi import coupled_redraft, jacobi_image_codes, speculative_accept
from liquidgen.inference.sampling import ImageSampling, sample_from_probs
from liquidgen.vocab import VocabLayout

from .conftest import LAYOUT, UNCOND_PROMPT, tiny_model

BOI = LAYOUT.boi_id
PROMPT = [1, 20, 21, 22, BOI]
ALPHA = 1e-3


def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of Pearson's chi-square test of ``counts`` against ``probs`` (cells with
    expected count below 5 pooled into one)."""
    total = float(counts.sum())
    expected = probs.double() * total
    small = expected < 5
    obs = torch.cat([counts[~small].double(), counts[small].double().sum()[None]])
    exp = torch.cat([expected[~small], expected[small].sum()[None]])
    keep = exp > 0
    assert bool((obs[~keep] == 0).all()), "a draw landed on an impossible outcome"
    obs, exp = obs[keep], exp[keep]
    statistic = float(((obs - exp) ** 2 / exp).sum())
    dof = obs.numel() - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0), torch.tensor(statistic / 2.0)))


def test_acceptance_rule_reproduces_the_target_distribution() -> None:
    """One window position: draft x ~ q, accept/resample -> the token is distributed as p."""
    generator = torch.Generator().manual_seed(0)
    k, trials = 6, 20000
    p = torch.tensor([0.40, 0.25, 0.15, 0.10, 0.10, 0.0], dtype=torch.float64)
    q = torch.tensor([0.05, 0.05, 0.30, 0.30, 0.10, 0.20], dtype=torch.float64)
    counts = torch.zeros(k)
    accepted = 0
    for _ in range(trials):
        draft = sample_from_probs(q[None], generator)  # (1,)
        n, replacement = speculative_accept(draft, q[None], torch.stack([p, p]), generator, 1)
        token = int(draft[0]) if n == 1 else int(replacement)
        counts[token] += 1
        accepted += n
    assert chi_square_p_value(counts, p) > ALPHA
    assert counts[5] == 0  # p = 0: never drawn although q proposes it
    expected_acceptance = float(torch.minimum(p, q).sum())  # 0.5
    assert abs(accepted / trials - expected_acceptance) < 0.02


def test_coupled_redraft_keeps_the_new_marginal_and_the_old_token_when_it_can() -> None:
    """x ~ old, coupled to new: distributed as new; kept with probability sum(min(old, new))
    (maximal coupling); positions without an old draft are drawn from new."""
    generator = torch.Generator().manual_seed(1)
    old = torch.tensor([0.10, 0.50, 0.20, 0.20, 0.0], dtype=torch.float64)
    new = torch.tensor([0.30, 0.40, 0.10, 0.0, 0.20], dtype=torch.float64)
    trials, counts, tail, kept = 20000, torch.zeros(5), torch.zeros(5), 0
    for _ in range(trials):
        x = sample_from_probs(old[None], generator)  # (1,)
        out = coupled_redraft(x, old[None], torch.stack([new, new]), generator)  # (2,)
        counts[int(out[0])] += 1
        tail[int(out[1])] += 1
        kept += int(out[0] == x[0])
    assert chi_square_p_value(counts, new) > ALPHA and counts[3] == 0
    assert chi_square_p_value(tail, new) > ALPHA
    assert abs(kept / trials - float(torch.minimum(old, new).sum())) < 0.02  # 0.7


class MarkovEngine:
    """A stand-in for the static decoder whose next-code logits depend only on the previous
    code, strongly (a 3-code Markov chain): when a draft changes, the distributions after it
    change too, which is what a coupled re-draft must handle to stay lossless."""

    rows = 1
    layout = VocabLayout(image_offset=4, codebook_size=3, boi_id=1, eoi_id=2, uncond_id=3)
    start = torch.tensor([0.6, 0.3, 0.1])  # the first code (after the prompt)
    chain = torch.tensor([[0.05, 0.15, 0.80], [0.70, 0.10, 0.20], [0.25, 0.70, 0.05]])

    def prefill(self, rows, pad):
        return self.start.log()[None], torch.tensor([len(rows[0]) - 1])  # (R, K), (R,)

    def window(self, tokens, positions):  # (R, W) -> (R, W, K)
        codes = tokens - self.layout.image_offset
        return self.chain[codes].log()

    def rewind(self, n):
        """Nothing to forget: the chain keeps no cache, it reads only the token it is given."""

    def exact(self, length):
        dist = {}
        for seq in itertools.product(range(3), repeat=length):
            p = float(self.start[seq[0]])
            for a, b in itertools.pairwise(seq):
                p *= float(self.chain[a, b])
            dist[seq] = p
        return dist


@pytest.mark.parametrize(("coupled", "row_width"), [(True, None), (False, None), (True, 2)])
def test_jacobi_follows_a_context_dependent_chain_exactly(
    coupled: bool, row_width: int | None
) -> None:
    """On a chain where every distribution hinges on the previous code, SJD's sequences
    (5 codes, window 4) follow the chain's exact distribution, coupled or not, with new
    slots drafted uniformly or as the code "one row up" (point-mass drafts); keeping stale
    drafts without the coupling's acceptance step would not (checked by hand: p-value 0.0)."""
    engine = MarkovEngine()
    exact = engine.exact(5)
    outcomes = sorted(exact)
    probs = torch.tensor([exact[o] for o in outcomes])
    sampling = ImageSampling(cfg_scale=1.0, temperature=1.0, top_k=0, top_p=1.0)
    generator = torch.Generator().manual_seed(11)
    n, forwards = 4000, 0
    counts = torch.zeros(len(outcomes))
    index = {o: i for i, o in enumerate(outcomes)}
    for _ in range(n):
        codes, used = jacobi_image_codes(
            engine, [[1]], engine.layout, sampling, 5, generator, window=4, coupled=coupled,
            row_width=row_width,
        )  # fmt: skip
        counts[index[tuple(codes.tolist())]] += 1
        forwards += used
    assert chi_square_p_value(counts, probs) > ALPHA
    assert forwards < 5 * n


def _exact_image_distribution(
    model: torch.nn.Module, sampling: ImageSampling, length: int
) -> dict[tuple[int, ...], float]:
    """Probability of every code sequence of ``length`` tokens under plain CFG sampling."""
    lo, hi = LAYOUT.image_offset, LAYOUT.image_end

    def probs(prefix: tuple[int, ...]) -> torch.Tensor:
        tokens = [LAYOUT.image_offset + c for c in prefix]
        with torch.inference_mode():
            cond = model(torch.tensor([PROMPT + tokens])).logits[:, -1, lo:hi]
            uncond = model(torch.tensor([UNCOND_PROMPT + tokens])).logits[:, -1, lo:hi]
        return sampling.code_probs(cond, uncond)[0].double()

    dist = {(): 1.0}
    for _ in range(length):
        grown = {}
        for prefix, weight in dist.items():
            p = probs(prefix)
            for code in torch.nonzero(p).flatten().tolist():
                grown[(*prefix, code)] = weight * float(p[code])
        dist = grown
    return dist


def _histogram(codes: torch.Tensor, outcomes: list[tuple[int, ...]]) -> tuple[torch.Tensor, int]:
    index = {o: i for i, o in enumerate(outcomes)}
    counts = torch.zeros(len(outcomes))
    outside = 0
    for row in codes.view(codes.shape[0], -1).tolist():
        if tuple(row) in index:
            counts[index[tuple(row)]] += 1
        else:
            outside += 1
    return counts, outside


def test_jacobi_images_follow_the_plain_sampling_distribution() -> None:
    """3-token images with top-k 3 (27 possible images): the empirical distribution of
    SJD's images fits the exact distribution of plain sampling, as plain sampling's does."""
    model = tiny_model("qwen2")
    settings = dict(cfg_scale=3.0, temperature=1.0, top_k=3, top_p=1.0)
    exact = _exact_image_distribution(model, ImageSampling(**settings), 3)
    outcomes = sorted(exact)
    probs = torch.tensor([exact[o] for o in outcomes])
    assert abs(float(probs.sum()) - 1) < 1e-6
    n = 1200
    common = dict(grid_hw=(1, 3), n_per_prompt=n, **settings)
    stats: dict[str, int] = {}
    sjd = generate_image_tokens(
        model, LAYOUT, [PROMPT], UNCOND_PROMPT, seed=0, speculative="jacobi",
        jacobi_window=3, stats=stats, **common,
    )  # fmt: skip
    plain = generate_image_tokens(model, LAYOUT, [PROMPT], UNCOND_PROMPT, seed=n, **common)
    for name, codes in (("jacobi", sjd), ("plain", plain)):
        counts, outside = _histogram(codes, outcomes)
        assert outside == 0, name
        assert chi_square_p_value(counts, probs) > ALPHA, name
    assert stats["tokens"] == 3 * n
    assert stats["forwards"] < 3 * n  # some drafts were accepted


@pytest.mark.parametrize("kind", ["qwen2", "llama", "gpt2"])
def test_jacobi_at_temperature_to_zero_equals_greedy_plain_decoding(kind: str) -> None:
    model = tiny_model(kind)
    greedy = dict(cfg_scale=3.0, temperature=1e-5, top_k=0, top_p=1.0)
    prompts = [PROMPT, [1, 30, BOI]]
    common = dict(grid_hw=(4, 5), n_per_prompt=2, **greedy)
    plain = generate_image_tokens(model, LAYOUT, prompts, UNCOND_PROMPT, seed=0, **common)
    stats: dict[str, int] = {}
    sjd = generate_image_tokens(
        model, LAYOUT, prompts, UNCOND_PROMPT, seed=99, speculative="jacobi",
        jacobi_window=6, stats=stats, **common,
    )  # fmt: skip
    assert torch.equal(sjd, plain)
    # Greedy plain decoding through the model's own logits: the same codes.
    lo, hi = LAYOUT.image_offset, LAYOUT.image_end
    sequence = list(PROMPT)
    uncond = list(UNCOND_PROMPT)
    with torch.inference_mode():
        for _ in range(20):
            c = model(torch.tensor([sequence])).logits[0, -1, lo:hi]
            u = model(torch.tensor([uncond])).logits[0, -1, lo:hi]
            code = int((u + 3.0 * (c - u)).argmax())
            sequence.append(lo + code)
            uncond.append(lo + code)
    assert sjd[0].flatten().tolist() == [t - lo for t in sequence[len(PROMPT) :]]
    assert stats["forwards"] <= 4 * 20  # 4 images; a window never takes more than plain


def test_jacobi_takes_fewer_forwards_when_drafts_are_right() -> None:
    """A model blind to image tokens (their input embeddings zeroed): the distributions a
    window predicts do not depend on the (possibly wrong) drafts before them, so re-drafted
    tokens are drawn from the true conditionals and always accepted. (On a random model whose
    next code hinges on the previous one, SJD gains nothing: every window yields one token.)"""
    model = tiny_model("llama")  # untied: zeroing the embedding rows leaves the head alone
    with torch.no_grad():
        model.get_input_embeddings().weight[LAYOUT.image_offset : LAYOUT.image_end] = 0
    stats: dict[str, int] = {}
    generate_image_tokens(
        model, LAYOUT, [PROMPT], UNCOND_PROMPT, grid_hw=(5, 6), n_per_prompt=2,
        cfg_scale=3.0, temperature=1.0, top_k=0, top_p=1.0, speculative="jacobi",
        jacobi_window=8, stats=stats,
    )  # fmt: skip
    assert stats["tokens"] == 60
    assert stats["forwards"] <= 60 / 3


def test_jacobi_outcomes_of_two_tokens_cover_the_support() -> None:
    """Every image SJD draws has positive probability under plain sampling (top-k respected)."""
    model = tiny_model("qwen2")
    settings = dict(cfg_scale=7.0, temperature=0.9, top_k=2, top_p=0.96)
    exact = _exact_image_distribution(model, ImageSampling(**settings), 2)
    codes = generate_image_tokens(
        model, LAYOUT, [PROMPT], UNCOND_PROMPT, grid_hw=(1, 2), n_per_prompt=200,
        speculative="jacobi", jacobi_window=2, **settings,
    )  # fmt: skip
    assert all(tuple(row) in exact for row in codes.view(200, -1).tolist())
    assert len(set(itertools.chain(map(tuple, codes.view(200, -1).tolist())))) > 1
