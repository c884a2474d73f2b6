"""The decision transformer: RTG, state and action tokens plus a learned time embedding, one causal stack.

A window of ``K`` timesteps becomes the token sequence ``R_0, s_0, a_0, R_1, s_1, a_1, ..., R_{K-1}, s_{K-1}``
(``3K - 1`` tokens: the last action is the one being predicted, so it never enters). Every token of timestep
``t`` gets the time embedding of the episode step it came from. The action at step ``t`` is read from the
residual stream at the state token ``s_t`` (position ``3t + 1``), which by causal masking sees the RTGs,
states and actions before it but never ``a_t``.

The blocks are laid out and hooked exactly as TransformerLens's ``HookedTransformer`` was (``W_Q`` of shape
``(n_heads, d_model, d_head)``, ``blocks.0.attn.hook_pattern``, ``blocks.0.hook_resid_post``,
``ln_final.hook_normalized``, ...). TransformerLens 4 removed ``HookedTransformer``; its native
``TransformerBridge`` takes ~55 ms per forward of this 2-token model on this CPU (this class: well under
1 ms), which training and a live app cannot afford. So the model is a ``HookedRootModule`` (TransformerLens's
supported base for hooking any module) configured by a ``TransformerBridgeConfig`` (the successor of
``HookedTransformerConfig``) at ``model.cfg``; ``run_with_cache`` returns TransformerLens's
``ActivationCache``, so ``decompose_resid``, ``stack_head_results``, ``logit_attrs`` (with action names
as tokens) and the ``QK``/``OV`` ``FactoredMatrix`` circuits work as on a language model.

Hook points of the embedding (besides the blocks'):
``hook_rtg_embed`` (B, K, d), ``hook_state_embed`` (B, K, d), ``hook_action_embed`` (B, K-1, d),
``embed_state.hook_features`` (B, K, H, W, F) the state embedding's input features,
``hook_embed`` (B, S, d) the interleaved token embeddings, ``hook_pos_embed`` (B, S, d) their time
embeddings; the residual stream entering block 0 is ``hook_embed + hook_pos_embed``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens import ActivationCache, HookedRootModule
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.FactoredMatrix import FactoredMatrix
from transformer_lens.hook_points import HookPoint

from ..envs.minigrid import ONEHOT_SIZES

STATE_EMBEDDINGS = ("grid", "raw", "cnn")
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "gelu": F.gelu}
ARCH = "decision_transformer"  # the "arch" of a DT checkpoint's config.json


@dataclass
class DTConfig:
    """Architecture of a decision transformer (saved as the ``agent`` section of its ``config.json``)."""

    obs_shape: tuple = (7, 7, 3)
    """symbolic MiniGrid observation (H, W, 3): object, colour, state index per cell"""
    num_actions: int = 3
    """actions the model predicts (Dynamic Obstacles: left, right, forward)"""
    state_embedding: str = "grid"
    """grid (linear on the one-hot view) | raw (linear on the integer encoding) | cnn (two convs on the one-hot view)"""
    n_layers: int = 1
    """transformer blocks"""
    n_heads: int = 2
    """attention heads per block"""
    d_model: int = 128
    """residual stream width"""
    d_mlp: int = 256
    """MLP hidden width (0: attention-only blocks)"""
    context: int = 1
    """timesteps in the window (1, 3, 9 in Decision Transformer Interpretability)"""
    layer_norm: bool = False
    """LayerNorm before attention, MLP and unembedding (the paper removes it for linearity)"""
    max_timestep: int = 256
    """rows of the time embedding: episode steps 0 .. max_timestep - 1"""
    act_fn: str = "relu"
    """MLP activation: relu | gelu"""

    def __post_init__(self):
        self.obs_shape = tuple(int(x) for x in self.obs_shape)
        if self.state_embedding not in STATE_EMBEDDINGS:
            raise ValueError(f"state_embedding {self.state_embedding!r}; expected one of {STATE_EMBEDDINGS}")
        if self.act_fn not in ACTIVATIONS:
            raise ValueError(f"act_fn {self.act_fn!r}; expected one of {tuple(ACTIVATIONS)}")
        if len(self.obs_shape) != 3 or self.obs_shape[2] != 3:
            raise ValueError(f"obs_shape {self.obs_shape}: the decision transformer reads symbolic MiniGrid "
                             "observations (H, W, 3)")
        for name in ("n_layers", "n_heads", "d_model", "context", "num_actions", "max_timestep"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")

    @property
    def n_ctx(self) -> int:
        """Tokens in a full window: RTG, state, action per timestep, without the last action."""
        return 3 * self.context - 1

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def tl_config(self) -> TransformerBridgeConfig:
        """The TransformerLens config of the blocks: actions are the vocabulary (plus one padding token)."""
        return TransformerBridgeConfig(
            d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads, d_head=self.d_head,
            d_mlp=self.d_mlp or None, n_ctx=self.n_ctx, d_vocab=self.num_actions + 1, d_vocab_out=self.num_actions,
            act_fn=self.act_fn, attn_only=self.d_mlp == 0, normalization_type="LN" if self.layer_norm else None,
            positional_embedding_type="standard", original_architecture=ARCH)

    def to_dict(self) -> dict:
        return {"arch": ARCH, **asdict(self), "obs_shape": list(self.obs_shape)}

    @classmethod
    def from_dict(cls, d: dict) -> "DTConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# ------------------------------------------------------------------------------------------------ blocks
class LayerNorm(nn.Module):
    """TransformerLens's LayerNorm: centre, scale (``hook_scale`` (B, S, 1)), ``hook_normalized`` (B, S, d)."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))
        self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(-1, keepdim=True)  # (B, S, d)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())  # (B, S, 1)
        return self.hook_normalized(x / scale) * self.w + self.b


def _norm(cfg: DTConfig) -> nn.Module:
    return LayerNorm(cfg.d_model) if cfg.layer_norm else nn.Identity()


class Attention(nn.Module):
    """Causal multi-head attention with TransformerLens's weights and hooks; ``QK``/``OV`` factored circuits."""

    causal: torch.Tensor  # (n_ctx, n_ctx) bool buffer, lower triangle
    hook_q: HookPoint
    hook_k: HookPoint
    hook_v: HookPoint
    hook_attn_scores: HookPoint
    hook_pattern: HookPoint
    hook_z: HookPoint

    def __init__(self, cfg: DTConfig):
        super().__init__()
        h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q, self.W_K, self.W_V = (nn.Parameter(torch.empty(h, d, dh)) for _ in range(3))
        self.W_O = nn.Parameter(torch.empty(h, dh, d))
        self.b_Q, self.b_K, self.b_V = (nn.Parameter(torch.zeros(h, dh)) for _ in range(3))
        self.b_O = nn.Parameter(torch.zeros(d))
        self.register_buffer("causal", torch.ones(cfg.n_ctx, cfg.n_ctx).tril().bool(), persistent=False)
        self.scale = math.sqrt(dh)
        for name in ("q", "k", "v", "attn_scores", "pattern", "z"):
            setattr(self, f"hook_{name}", HookPoint())

    def forward(self, x: torch.Tensor, key_mask: "torch.Tensor | None" = None) -> torch.Tensor:
        """``x`` (B, S, d), ``key_mask`` (B, S) True where a token is real -> (B, S, d)."""
        q = self.hook_q(torch.einsum("bsd,hde->bshe", x, self.W_Q) + self.b_Q)  # (B, S, H, dh)
        k = self.hook_k(torch.einsum("bsd,hde->bshe", x, self.W_K) + self.b_K)  # (B, S, H, dh)
        v = self.hook_v(torch.einsum("bsd,hde->bshe", x, self.W_V) + self.b_V)  # (B, S, H, dh)
        s = x.shape[1]
        allowed = self.causal[:s, :s][None, None]  # (1, 1, Sq, Sk)
        if key_mask is not None:
            allowed = allowed & key_mask[:, None, None, :]  # (B, 1, Sq, Sk)
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / self.scale  # (B, H, Sq, Sk)
        scores = self.hook_attn_scores(scores.masked_fill(~allowed, float("-inf")))
        # a padding query sees no key at all: its row is all -inf -> NaN; it attends to nothing instead
        pattern = self.hook_pattern(torch.softmax(scores, -1).masked_fill(~allowed, 0.0))  # (B, H, Sq, Sk)
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))  # (B, S, H, dh)
        return torch.einsum("bshe,hed->bsd", z, self.W_O) + self.b_O  # (B, S, d)

    @property
    def QK(self) -> FactoredMatrix:
        """(H, d_model, d_model): query-side residual x key-side residual -> attention score (x sqrt(d_head))."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """(H, d_model, d_model): what attending to a token writes into the residual stream."""
        return FactoredMatrix(self.W_V, self.W_O)


class MLP(nn.Module):
    def __init__(self, cfg: DTConfig):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        self.act = ACTIVATIONS[cfg.act_fn]
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(x @ self.W_in + self.b_in)  # (B, S, d_mlp)
        return self.hook_post(self.act(pre)) @ self.W_out + self.b_out  # (B, S, d)


class Block(nn.Module):
    """Pre-norm residual block: resid_pre -> +attn -> resid_mid -> +mlp -> resid_post."""

    hook_resid_pre: HookPoint
    hook_attn_out: HookPoint
    hook_resid_mid: HookPoint
    hook_mlp_out: HookPoint
    hook_resid_post: HookPoint

    def __init__(self, cfg: DTConfig):
        super().__init__()
        self.ln1, self.attn = _norm(cfg), Attention(cfg)
        self.attn_only = cfg.d_mlp == 0
        if not self.attn_only:
            self.ln2, self.mlp = _norm(cfg), MLP(cfg)
        for name in ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post"):
            setattr(self, f"hook_{name}", HookPoint())

    def forward(self, resid: torch.Tensor, key_mask: "torch.Tensor | None" = None) -> torch.Tensor:
        resid = self.hook_resid_pre(resid)  # (B, S, d)
        resid = self.hook_resid_mid(resid + self.hook_attn_out(self.attn(self.ln1(resid), key_mask)))
        if not self.attn_only:
            resid = resid + self.hook_mlp_out(self.mlp(self.ln2(resid)))
        return self.hook_resid_post(resid)


# ------------------------------------------------------------------------------------------------ embeddings
class StateEmbedding(nn.Module):
    """Symbolic observations (B, K, H, W, 3) -> state tokens (B, K, d_model).

    Features (``hook_features``, (B, K, H, W, F)): ``grid``/``cnn`` the one-hot view (F = 20: 11 object,
    6 colour, 3 state indices), ``raw`` the integer encoding as floats (F = 3). ``grid``/``raw`` are one
    linear map of the flattened features, so each cell and channel writes a fixed vector into the residual
    stream (Decision Transformer Interpretability's per-position contributions). Float input of the feature
    shape (e.g. a one-hot view for attribution) is taken as the features directly.
    """

    def __init__(self, kind: str, obs_shape: tuple, d_model: int):
        super().__init__()
        self.kind, (h, w, _) = kind, obs_shape
        self.num_features = 3 if kind == "raw" else sum(ONEHOT_SIZES)
        if kind == "cnn":
            self.conv1, self.relu1 = nn.Conv2d(self.num_features, 32, 3, padding=1), nn.ReLU()
            self.conv2, self.relu2 = nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()
            self.linear = nn.Linear(32 * h * w, d_model)
        else:
            self.linear = nn.Linear(h * w * self.num_features, d_model)
        self.hook_features = HookPoint()

    def features(self, states: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W, 3) integer encoding (or (B, K, H, W, F) features) -> (B, K, H, W, F) float."""
        if states.shape[-1] == self.num_features and states.is_floating_point():
            return states
        if states.shape[-1] != 3:
            raise ValueError(f"states have {states.shape[-1]} channels; expected the 3-channel symbolic encoding"
                             f" (or {self.num_features} feature channels as floats)")
        if self.kind == "raw":
            return states.float()
        codes = states.round().long() if states.is_floating_point() else states.long()
        planes = [F.one_hot(codes[..., k].clamp(0, n - 1), n) for k, n in enumerate(ONEHOT_SIZES)]
        return torch.cat(planes, -1).float()  # (B, K, H, W, 20)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        x = self.hook_features(self.features(states))  # (B, K, H, W, F)
        b, k = x.shape[:2]
        if self.kind == "cnn":
            x = x.flatten(0, 1).permute(0, 3, 1, 2)  # (B*K, F, H, W)
            x = self.relu2(self.conv2(self.relu1(self.conv1(x))))  # (B*K, 32, H, W)
            return self.linear(x.reshape(b, k, -1))  # (B, K, d)
        return self.linear(x.reshape(b, k, -1))  # (B, K, d)


class DecisionTransformer(HookedRootModule):
    """``model(states, actions, rtgs, timesteps, mask=None) -> action logits (B, K, A)``.

    - ``states`` (B, K, H, W, 3) symbolic observations (uint8 or integer-valued floats);
    - ``actions`` (B, K - 1) the actions taken at the first K - 1 steps (a (B, K) tensor is accepted and its
      last column ignored: that is the action being predicted);
    - ``rtgs`` (B, K) returns-to-go (or (B, K, 1)); ``timesteps`` (B, K) episode steps;
    - ``mask`` (B, K) bool, False on left padding (timesteps before the episode began): padded tokens are
      never attended to.

    Row ``[:, t]`` of the output is the prediction of the action at step t. ``K`` may be anything up to
    ``config.context``; there is no within-window position embedding, so a shorter window is just that.
    """

    hook_rtg_embed: HookPoint
    hook_state_embed: HookPoint
    hook_action_embed: HookPoint
    hook_embed: HookPoint
    hook_pos_embed: HookPoint

    def __init__(self, config: DTConfig, seed: int = 0):
        super().__init__()
        self.config, self.cfg = config, config.tl_config()
        d = config.d_model
        self.embed_state = StateEmbedding(config.state_embedding, config.obs_shape, d)
        self.embed_rtg = nn.Linear(1, d)
        self.W_E = nn.Parameter(torch.empty(config.num_actions + 1, d))  # action tokens; the last row pads
        self.W_time = nn.Parameter(torch.empty(config.max_timestep, d))
        for name in ("rtg_embed", "state_embed", "action_embed", "embed", "pos_embed"):
            setattr(self, f"hook_{name}", HookPoint())
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_final = _norm(config)
        self.W_U = nn.Parameter(torch.empty(d, config.num_actions))
        self.b_U = nn.Parameter(torch.zeros(config.num_actions))
        self.action_names = [str(a) for a in range(config.num_actions)]
        self.rtg_range: tuple[float, float] | None = None  # (lo, hi) of the training data's RTGs, set by the loader
        self.setup()
        self.init_weights(seed)

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """Deterministic from ``seed`` alone: embedding layers 1/sqrt(fan_in) (PyTorch's scale), every other
        matrix N(0, 0.02) (GPT-2's, as TransformerLens), biases 0, LayerNorm weights 1."""
        gen = torch.Generator().manual_seed(int(seed))
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("bias", "b") or leaf.startswith("b_"):
                p.zero_()
            elif leaf == "w":
                p.fill_(1.0)
            elif name.startswith(("embed_state.", "embed_rtg.")):
                p.normal_(0.0, 1.0 / math.sqrt(p[0].numel()), generator=gen)
            else:
                p.normal_(0.0, 0.02, generator=gen)

    # -------------------------------------------------------------------------------------------- forward
    def check_inputs(self, states, actions, rtgs, timesteps, mask=None) -> tuple:
        """Validate shapes; returns ``(actions (B, K-1) long, rtgs (B, K, 1) float)``."""
        cfg = self.config
        if states.dim() != 5 or tuple(states.shape[2:4]) != cfg.obs_shape[:2]:
            raise ValueError(f"states of shape {tuple(states.shape)} do not match the model's observations "
                             f"{cfg.obs_shape}: expected (B, K, {', '.join(map(str, cfg.obs_shape))}) symbolic views")
        b, k = states.shape[:2]
        if not 1 <= k <= cfg.context:
            raise ValueError(f"a window of {k} timesteps is longer than the model's context of {cfg.context}"
                             if k else "a window needs at least one timestep")
        if rtgs.dim() == 3:
            rtgs = rtgs.squeeze(-1)
        if actions.dim() == 2 and actions.shape[1] == k:
            actions = actions[:, :-1]  # the last action is the target, never an input
        for name, t, want in (("rtgs", rtgs, (b, k)), ("timesteps", timesteps, (b, k)),
                              ("actions", actions, (b, k - 1)), ("mask", mask, (b, k))):
            if t is not None and tuple(t.shape) != want:
                raise ValueError(f"{name} of shape {tuple(t.shape)}; expected {want} for states {tuple(states.shape)}")
        if timesteps.numel() and (int(timesteps.min()) < 0 or int(timesteps.max()) >= cfg.max_timestep):
            raise ValueError(f"timesteps must lie in [0, {cfg.max_timestep}), got {int(timesteps.min())}.."
                             f"{int(timesteps.max())} (the time embedding has max_timestep rows)")
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) > cfg.num_actions):
            raise ValueError(f"actions must lie in [0, {cfg.num_actions}] ({cfg.num_actions} = padding)")
        return actions.long(), rtgs.float().unsqueeze(-1)

    def embed(self, states, actions, rtgs, timesteps, mask=None) -> tuple:
        """The residual stream entering block 0, (B, 3K - 1, d), and the key mask (B, 3K - 1) or None."""
        actions, rtgs = self.check_inputs(states, actions, rtgs, timesteps, mask)
        b, k = states.shape[:2]
        rtg = self.hook_rtg_embed(self.embed_rtg(rtgs))  # (B, K, d)
        state = self.hook_state_embed(self.embed_state(states))  # (B, K, d)
        action = self.hook_action_embed(self.W_E[actions])  # (B, K-1, d)
        action = torch.cat([action, torch.zeros_like(rtg[:, :1])], 1)  # (B, K, d): a slot for the unused last one
        tokens = torch.stack([rtg, state, action], 2).reshape(b, 3 * k, -1)[:, :-1]  # (B, S, d)
        time = self.W_time[timesteps.long()].repeat_interleave(3, 1)[:, :-1]  # (B, S, d)
        resid = self.hook_embed(tokens) + self.hook_pos_embed(time)  # (B, S, d)
        key_mask = None if mask is None else mask.bool().repeat_interleave(3, 1)[:, :-1]  # (B, S)
        return resid, key_mask

    def forward(self, states, actions, rtgs, timesteps, mask=None) -> torch.Tensor:
        resid, key_mask = self.embed(states, actions, rtgs, timesteps, mask)  # (B, S, d)
        for block in self.blocks:
            resid = block(resid, key_mask)
        resid = self.ln_final(resid)[:, 1::3]  # (B, K, d) at the state tokens
        return resid @ self.W_U + self.b_U  # (B, K, A)

    def run_with_cache(self, *args, **kwargs):
        """``(action logits, ActivationCache)``: TransformerLens's cache over this model."""
        out, cache = super().run_with_cache(*args, **kwargs)
        return out, ActivationCache(cache, self, has_batch_dim=not kwargs.get("remove_batch_dim", False))

    # -------------------------------------------------------------------------------------------- circuits
    @staticmethod
    def state_positions(k: int) -> torch.Tensor:
        """Sequence positions of the state tokens of a K-step window (where actions are read)."""
        return torch.arange(k) * 3 + 1

    def to_single_token(self, action: "str | int") -> int:
        """An action name (``"forward"``) or index -> its index (the "token" of TransformerLens's helpers)."""
        if isinstance(action, str):
            if action not in self.action_names:
                raise KeyError(f"unknown action {action!r}; actions: {', '.join(self.action_names)}")
            return self.action_names.index(action)
        return int(action)

    def tokens_to_residual_directions(self, actions) -> torch.Tensor:
        """Unembedding direction(s) of action(s): (d_model,) or (..., d_model)."""
        if isinstance(actions, (str, int)):
            return self.W_U[:, self.to_single_token(actions)]
        return self.W_U[:, torch.as_tensor(actions).long()].movedim(0, -1)

    def accumulated_bias(self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True) -> torch.Tensor:
        """Sum of the output biases (attention ``b_O``, MLP ``b_out``) of the blocks before ``layer``, (d_model,)."""
        total = torch.zeros(self.config.d_model, device=self.W_U.device)
        for i, block in enumerate(cast("list[Block]", self.blocks[: layer + (1 if mlp_input else 0)])):
            total = total + block.attn.b_O
            if include_mlp_biases and not block.attn_only and i < layer:
                total = total + block.mlp.b_out
        return total

    def _stack(self, name: str) -> torch.Tensor:
        return torch.stack([getattr(b.attn, name) for b in self.blocks])  # (L, H, ...)

    @property
    def QK(self) -> FactoredMatrix:
        """(L, H, d_model, d_model) query-key circuits of every head."""
        return FactoredMatrix(self._stack("W_Q"), self._stack("W_K").transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """(L, H, d_model, d_model) output-value circuits of every head."""
        return FactoredMatrix(self._stack("W_V"), self._stack("W_O"))
