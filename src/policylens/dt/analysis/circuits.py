"""QK and OV circuits of a decision transformer, read over the 7x7 view (Decision Transformer
Interpretability's Figures 14, 16, 17).

With a linear state embedding (``grid``/``raw``), putting entity ``e`` (empty, wall, obstacle, goal: MiniGrid's
object, colour, state codes) at cell ``(x, y)`` of the view adds a fixed vector to the state token. Pushing
that vector (minus the empty cell's, the only identifiable part) through the model's weights gives maps over
the view:

- ``direct``: straight to the unembedding, the preference the state token itself expresses (Table 3's
  back-of-envelope calculation, for every cell);
- ``ov``: through head h's OV circuit to the unembedding, what the head writes when it attends to the state;
- ``qk_to_rtg``: through head h's QK circuit against the RTG token's key, how the entity changes the score of
  attending from the state to the RTG (the paper: anything but an empty cell in front suppresses it).

The RTG and time embeddings are projected on preference directions directly and through each head's OV.
The bilinear circuits use TransformerLens ``FactoredMatrix``es (``model.QK``, ``model.OV``). LayerNorm, when
the model has it, enters as its centring and weight with the (input-dependent) scale left out. Only the
direct path of a layer's output to the logits is read (exact for a 1-layer model).
"""
from __future__ import annotations

import math
from typing import Any, cast

import torch
from transformer_lens.FactoredMatrix import FactoredMatrix

from .attribution import state_weights, target_direction
from .scan import preference_pairs

ENTITIES = {"empty": (1, 0, 0), "wall": (2, 5, 0), "obstacle": (6, 2, 0), "goal": (8, 1, 0)}


def front_cell(model) -> tuple:
    """``(x, y)`` of the cell in front of the agent in the view (the agent is at x = W // 2, y = H - 1)."""
    h, w = model.config.obs_shape[:2]
    return w // 2, h - 2


def _features(model, code: tuple) -> torch.Tensor:
    """(F,) the state embedding's features of one cell holding ``code`` (object, colour, state)."""
    from ...envs.minigrid import ONEHOT_SIZES

    if model.config.state_embedding == "raw":
        return torch.tensor(code, dtype=torch.float32)
    return torch.cat([torch.nn.functional.one_hot(torch.tensor(c), n).float() for c, n in zip(code, ONEHOT_SIZES)])


@torch.no_grad()
def entity_vectors(model) -> torch.Tensor:
    """(E, H, W, d): what each entity of :data:`ENTITIES` at each cell adds to the state token (bias excluded)."""
    weights = state_weights(model)  # (H, W, F, d)
    return torch.stack([torch.einsum("hwfd,f->hwd", weights, _features(model, code)) for code in ENTITIES.values()])


def _ln(model, x: torch.Tensor, norm) -> torch.Tensor:
    """LayerNorm without its scale: centre over d_model and multiply by the weight (identity without LN)."""
    if not model.config.layer_norm:
        return x
    return (x - x.mean(-1, keepdim=True)) * norm.w.detach()


@torch.no_grad()
def unembed_matrix(model) -> torch.Tensor:
    """(d, A): residual vector -> logits through the final LayerNorm (centring and weight, scale left out)."""
    if not model.config.layer_norm:
        return model.W_U.detach()
    g = model.ln_final.w.detach()[:, None] * model.W_U.detach()  # (d, A)
    return g - g.mean(0, keepdim=True)


@torch.no_grad()
def full_qk(model, query: torch.Tensor, key: torch.Tensor, layer: int = 0, key_bias: bool = True) -> FactoredMatrix:
    """(H, nq, nk) attention scores between residual vectors ``query`` (nq, d) and ``key`` (nk, d) of each head of
    ``layer``: ``ln(query) W_Q (ln(key) W_K + b_K)^T / sqrt(d_head)``. ``b_Q`` is left out: it adds ``b_Q . k`` to every
    query's score for key k, so differences between queries for one key stay exact."""
    block = model.blocks[layer]
    q = _ln(model, query, getattr(block, "ln1", None)) @ block.attn.W_Q.detach()  # (H, nq, dh)
    k = _ln(model, key, getattr(block, "ln1", None)) @ block.attn.W_K.detach()  # (H, nk, dh)
    if key_bias:
        k = k + block.attn.b_K.detach()[:, None]
    return FactoredMatrix(q, k.transpose(-2, -1)) * (1 / math.sqrt(model.config.d_head))


@torch.no_grad()
def _ab(m: FactoredMatrix) -> torch.Tensor:
    """The product of a factored matrix of tensors (TransformerLens types ``AB`` as possibly a duck-typed
    TensorLike, which these never are)."""
    return cast(torch.Tensor, m.AB)


def full_ov(model, source: torch.Tensor, layer: int = 0) -> FactoredMatrix:
    """(H, n, A): what each head of ``layer`` adds to the action logits when it attends (weight 1) to residual
    vectors ``source`` (n, d): ``ln(source) @ OV @ unembed`` via ``model.OV``."""
    block = model.blocks[layer]
    return _ln(model, source, getattr(block, "ln1", None)) @ model.OV[layer] @ unembed_matrix(model)


@torch.no_grad()
def rtg_vector(model, rtg: float) -> torch.Tensor:
    """(d,) the RTG token's embedding at ``rtg`` (time embedding excluded)."""
    return model.embed_rtg.weight.detach()[:, 0] * float(rtg) + model.embed_rtg.bias.detach()


@torch.no_grad()
def circuit_maps(model, preference=("forward", "right"), rtg: "float | None" = None, layer: int = 0,
                 key_time: "int | None" = None) -> dict:
    """Maps over the view for every entity (minus empty): ``direct`` (E, H, W), ``ov`` (heads, E, H, W) on the
    ``preference``, ``qk_to_rtg`` (heads, E, H, W) against the RTG token at ``rtg`` (default: the top of the
    training RTGs, else 1) at episode step ``key_time`` (its time embedding added to the key; None: left out);
    plus ``direct_absolute`` (E, H, W) without subtracting empty (the paper's Table 3) and ``front_weights`` (F,)
    the direct push of each input feature of the cell ahead (``raw``: per unit of the object, colour and state
    code, the paper's 0.27 and -0.742)."""
    weights, label = target_direction(model, preference)
    vectors = entity_vectors(model)  # (E, H, W, d)
    n_e, h, w, d = vectors.shape
    rows = vectors.reshape(-1, d)  # (E*H*W, d)
    to_pref = unembed_matrix(model) @ weights  # (d,)
    direct_abs = (rows @ to_pref).reshape(n_e, h, w)  # (E, H, W)
    empty = list(ENTITIES).index("empty")
    ov = (full_ov(model, rows, layer).AB @ weights).reshape(-1, n_e, h, w)  # (heads, E, H, W)
    if rtg is None:
        rtg = model.rtg_range[1] if getattr(model, "rtg_range", None) else 1.0
    key = rtg_vector(model, rtg) + (model.W_time.detach()[key_time] if key_time is not None else 0)  # (d,)
    qk = _ab(full_qk(model, rows, key[None], layer))[..., 0].reshape(-1, n_e, h, w)  # (heads, E, H, W)
    minus_empty = lambda x: x - x[..., empty:empty + 1, :, :]  # noqa: E731
    x, y = front_cell(model)
    front = state_weights(model)[x, y] @ to_pref  # (F,) per input feature of the cell ahead
    return {"entities": list(ENTITIES), "preference": label, "rtg": float(rtg), "layer": layer, "key_time": key_time,
            "front_cell": [x, y], "front_weights": front.tolist(), "direct_absolute": direct_abs.numpy(),
            "direct": minus_empty(direct_abs).numpy(), "ov": minus_empty(ov).numpy(),
            "qk_to_rtg": minus_empty(qk).numpy()}


@torch.no_grad()
def embedding_projections(model, layer: int = 0) -> dict:
    """The RTG and time embeddings on every preference direction: directly (as if they reached the state token
    unchanged) and through each head's OV circuit (what attending to them writes).

    ``rtg``: {pair: {"direct": per unit RTG, "bias": the RTG embedding's bias, "ov": [per head per unit RTG]}};
    ``time``: {pair: {"direct": (T,), "ov": (heads, T)}}."""
    u = unembed_matrix(model)  # (d, A)
    w_rtg, b_rtg = model.embed_rtg.weight.detach()[:, 0], model.embed_rtg.bias.detach()  # (d,), (d,)
    time = model.W_time.detach()  # (T, d)
    out: dict[str, Any] = {"rtg": {}, "time": {}, "layer": layer}
    for a, b in preference_pairs(list(model.action_names)):
        weights, label = target_direction(model, (a, b))
        direction = u @ weights  # (d,)
        rtg_ov = _ab(full_ov(model, w_rtg[None], layer))[:, 0] @ weights  # (heads,)
        out["rtg"][label] = {"direct": float(w_rtg @ direction), "bias": float(b_rtg @ direction),
                             "ov": rtg_ov.tolist()}
        out["time"][label] = {"direct": (time @ direction).tolist(),
                              "ov": (full_ov(model, time, layer).AB @ weights).tolist()}
    return out
