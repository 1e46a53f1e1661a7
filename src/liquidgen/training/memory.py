"""A per-GPU memory estimate for training a model under FSDP2 (used to validate big recipes).

The model is built on the meta device (no memory), so a 7B recipe can be checked on a
laptop. The estimate counts, per rank:

- sharded state: fp32 master weights (4 B), fp32 gradients (4 B) and AdamW's two fp32
  moments (8 B) per trainable parameter (frozen ones: 4 B), divided by the world size;
- one decoder layer's parameters gathered in full (FSDP2 all-gathers a layer at a time,
  with the next one prefetched: counted twice) plus the unsharded root (embeddings, head);
- activations: with gradient checkpointing, the input of every layer (``T x H`` values in
  the autocast dtype) plus one layer's full working set, estimated as
  ``ACTIVATION_FACTOR x T x H`` values; without it, every layer's working set;
- the logits of the target positions in fp32 plus their softmax gradient (``2 x T x V x 4 B``).

It is a planning number (the CUDA allocator's fragmentation and NCCL buffers come on top),
not a guarantee.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from liquidgen.training.dist import decoder_layers

BYTES_FP32 = 4
BYTES_BF16 = 2
ADAM_BYTES = 2 * BYTES_FP32  # exp_avg + exp_avg_sq
# Values kept per token and layer for backward, in units of the hidden size: q, k, v, attention
# output, two norms, residuals and the MLP's gate/up/act (x intermediate/hidden ~ 3 x 8/3).
ACTIVATION_FACTOR = 34
GIB = 1024**3


@dataclasses.dataclass
class MemoryEstimate:
    """Bytes per rank, by category."""

    world_size: int
    parameters: int
    trainable: int
    sharded_state: int
    gathered_params: int
    activations: int
    logits: int

    @property
    def total(self) -> int:
        return self.sharded_state + self.gathered_params + self.activations + self.logits

    def table(self) -> str:
        """A small aligned table in GiB, for logs and docs."""
        rows = [
            (
                "parameters",
                f"{self.parameters / 1e9:.2f} B ({self.trainable / 1e9:.2f} B trainable)",
            ),
            ("world size", str(self.world_size)),
            ("sharded weights+grads+AdamW", f"{self.sharded_state / GIB:.1f} GiB"),
            ("gathered layers + root", f"{self.gathered_params / GIB:.1f} GiB"),
            ("activations", f"{self.activations / GIB:.1f} GiB"),
            ("logits (fp32 + grad)", f"{self.logits / GIB:.1f} GiB"),
            ("total per GPU", f"{self.total / GIB:.1f} GiB"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def estimate_fsdp2_memory(
    model: nn.Module,
    *,
    world_size: int,
    micro_batch: int,
    seq_len: int,
    gradient_checkpointing: bool,
    activation_bytes: int = BYTES_BF16,
) -> MemoryEstimate:
    """Estimate per-rank memory of full training ``model`` (any device, meta included)."""
    config = getattr(model, "config", None)
    hidden = int(config.hidden_size)
    vocab = int(config.vocab_size)
    unique = {id(p): p for p in model.parameters()}.values()  # tied weights once
    parameters = sum(p.numel() for p in unique)
    trainable = sum(p.numel() for p in unique if p.requires_grad)
    frozen = parameters - trainable
    per_param = BYTES_FP32 + BYTES_FP32 + ADAM_BYTES
    sharded = (trainable * per_param + frozen * BYTES_FP32) // world_size
    layers = decoder_layers(model)
    layer_params = sum(p.numel() for p in layers[0].parameters())
    root_params = parameters - layer_params * len(layers)
    gathered = (2 * layer_params + root_params) * BYTES_FP32
    tokens = micro_batch * seq_len
    working_set = ACTIVATION_FACTOR * tokens * hidden * activation_bytes
    if gradient_checkpointing:
        activations = len(layers) * tokens * hidden * activation_bytes + working_set
    else:
        activations = len(layers) * working_set
    logits = 2 * tokens * vocab * BYTES_FP32
    return MemoryEstimate(world_size, parameters, trainable, sharded, gathered, activations, logits)
