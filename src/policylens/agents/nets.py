"""The architectures: ``impala``, ``clear``, ``cnn``, ``nature``, ``mlp`` and ``attention``; each may be recurrent.

Every activation worth analysing is a named module output (post-ReLU where it says so), listed with its
shape in the class's ``LAYERS``; ``policylens layers RUN`` prints them for a given observation shape.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import ActorCritic, ScaleObs, dense_stack


class ConvReLU(nn.Module):
    """conv -> ReLU; the module's output is the post-ReLU activation (``.conv`` is the pre-activation)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: "int | str" = "same"):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding if stride == 1 else 0)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.relu0, self.conv0 = nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1)
        self.relu1, self.conv1 = nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv1(self.relu1(self.conv0(self.relu0(x))))


class ImpalaBlock(nn.Module):
    """conv 3x3 -> max-pool 3/2 -> two residual blocks (IMPALA's ConvSequence)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.res1, self.res2 = ResidualBlock(cout), ResidualBlock(cout)

    def forward(self, x):
        return self.res2(self.res1(self.pool(self.conv(x))))


class L2Pool(nn.Module):
    """L2 pooling with pool size = stride (Understanding RL Vision, Appendix C)."""

    def __init__(self, size: int = 2, eps: float = 1e-6):
        super().__init__()
        self.size, self.eps = size, eps

    def forward(self, x):
        k = self.size
        return torch.sqrt(nn.functional.avg_pool2d(x * x, k, stride=k) * (k * k) + self.eps)


class SpatialSoftmax(nn.Module):
    """Softmax over the spatial positions of each map: (B, K, h, w) -> (B, K, h, w), each map sums to 1."""

    def forward(self, x):
        b, k, h, w = x.shape
        return torch.softmax(x.reshape(b, k, h * w), dim=-1).reshape(b, k, h, w)


def _flat_dim(module: nn.Module, shape) -> int:
    with torch.no_grad():
        return int(module(torch.zeros(1, *shape)).numel())


class Impala(ActorCritic):
    """IMPALA CNN (channels 16, 32, 32; 256 hidden), procgen's standard."""

    LAYERS = {
        "block1": "(B, 16, H/2, W/2) after the first conv sequence (residual stream)",
        "block2": "(B, 32, H/4, W/4)",
        "block3": "(B, 32, H/8, W/8)",
        "block3_relu": "(B, 32, H/8, W/8) post-ReLU",
        "fc_relu": "(B, 256) hidden features",
    }

    def __init__(self, obs_shape, num_actions, obs_scale=1 / 255, channels=(16, 32, 32), hidden_dim=256, **kw):
        super().__init__(obs_shape, num_actions, hidden_dim, **kw)
        h, w, c = obs_shape
        self.scale = ScaleObs(obs_scale)
        chans = (c, *channels)
        for k in range(len(channels)):
            self.add_module(f"block{k + 1}", ImpalaBlock(chans[k], chans[k + 1]))
        self.n_blocks = len(channels)
        self.block3_relu = nn.ReLU()
        self.fc = nn.Linear(_flat_dim(self.conv_features_raw, (c, h, w)), hidden_dim)
        self.fc_relu = nn.ReLU()

    def conv_features_raw(self, x):
        for k in range(self.n_blocks):
            x = getattr(self, f"block{k + 1}")(x)
        return x

    def conv_features(self, obs):  # (B, H, W, C) uint8 -> (B, C', h, w)
        return self.block3_relu(self.conv_features_raw(self.scale(obs)))

    def features(self, obs):
        return self.fc_relu(self.fc(self.conv_features(obs).flatten(1)))  # (B, 256)


class Clear(ActorCritic):
    """Understanding RL Vision's interpretable CNN: no residuals, L2 pooling (size = stride), dense 256 -> 512."""

    LAYERS = {
        "conv1a": "(B, 16, H, W) post-ReLU",
        "pool1": "(B, 16, H/2, W/2)",
        "conv2a": "(B, 32, H/2, W/2) post-ReLU",
        "conv2b": "(B, 32, H/2, W/2) post-ReLU (the paper's layer 2b)",
        "pool2": "(B, 32, H/4, W/4)",
        "conv3a": "(B, 32, H/4, W/4) post-ReLU",
        "pool3": "(B, 32, H/8, W/8)",
        "conv4a": "(B, 32, H/8, W/8) post-ReLU",
        "pool4": "(B, 32, H/16, W/16)",
        "fc1": "(B, 256) post-ReLU",
        "fc2": "(B, 512) post-ReLU",
    }

    def __init__(self, obs_shape, num_actions, obs_scale=1 / 255, **kw):
        super().__init__(obs_shape, num_actions, 512, **kw)
        h, w, c = obs_shape
        if min(h, w) < 16:  # four 2x poolings
            raise ValueError(f"the clear architecture needs observations of at least 16x16, got {tuple(obs_shape)}")
        self.scale = ScaleObs(obs_scale)
        self.conv1a, self.pool1 = ConvReLU(c, 16, 7), L2Pool(2)
        self.conv2a, self.conv2b, self.pool2 = ConvReLU(16, 32, 5), ConvReLU(32, 32, 5), L2Pool(2)
        self.conv3a, self.pool3 = ConvReLU(32, 32, 5), L2Pool(2)
        self.conv4a, self.pool4 = ConvReLU(32, 32, 5), L2Pool(2)
        self.conv_stack = [self.conv1a, self.pool1, self.conv2a, self.conv2b, self.pool2,
                           self.conv3a, self.pool3, self.conv4a, self.pool4]
        flat = _flat_dim(lambda x: self._convs(x), (c, h, w))
        self.fc1 = nn.Sequential(nn.Linear(flat, 256), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(256, 512), nn.ReLU())

    def _convs(self, x):
        for layer in self.conv_stack:
            x = layer(x)
        return x

    def features(self, obs):
        return self.fc2(self.fc1(self._convs(self.scale(obs)).flatten(1)))  # (B, 512)


class GridCNN(ActorCritic):
    """Small CNN for MiniGrid: a per-cell embedding (a ``patch``x``patch`` conv, stride ``patch``: 8 for the
    RGB view with 8-px tiles, 1 for symbolic obs), two 3x3 convs over the 7x7 cells, dense 256."""

    LAYERS = {
        "embed": "(B, 32, H/patch, W/patch) post-ReLU, one vector per grid cell (7x7 in MiniGrid)",
        "conv1": "(B, 32, H/patch, W/patch) post-ReLU",
        "conv2": "(B, 64, H/patch, W/patch) post-ReLU",
        "fc": "(B, 256) post-ReLU",
    }

    def __init__(self, obs_shape, num_actions, obs_scale=1 / 255, patch=None, **kw):
        super().__init__(obs_shape, num_actions, 256, **kw)
        h, w, c = obs_shape
        patch = patch or (8 if h >= 32 else 1)
        self.scale = ScaleObs(obs_scale)
        self.embed = ConvReLU(c, 32, patch, stride=patch) if patch > 1 else ConvReLU(c, 32, 1)
        self.conv1, self.conv2 = ConvReLU(32, 32, 3), ConvReLU(32, 64, 3)
        flat = _flat_dim(lambda x: self.conv2(self.conv1(self.embed(x))), (c, h, w))
        self.fc = nn.Sequential(nn.Linear(flat, 256), nn.ReLU())

    def conv_features(self, obs):
        return self.conv2(self.conv1(self.embed(self.scale(obs))))  # (B, 64, 7, 7)

    def features(self, obs):
        return self.fc(self.conv_features(obs).flatten(1))  # (B, 256)


class Nature(ActorCritic):
    """The DQN Nature CNN (Mnih et al. 2015), the Atari trunk of CleanRL's ``ppo_atari`` and Stable-Baselines3's
    ``CnnPolicy``: conv 32x8x8/4, 64x4x4/2, 64x3x3/1 (no padding), dense ``fc_dim`` (512; SB3's
    ``features_dim``). Shapes below for 84x84 frames."""

    LAYERS = {
        "conv1": "(B, 32, 20, 20) post-ReLU",
        "conv2": "(B, 64, 9, 9) post-ReLU",
        "conv3": "(B, 64, 7, 7) post-ReLU",
        "fc": "(B, 512) post-ReLU",
    }

    def __init__(self, obs_shape, num_actions, obs_scale=1 / 255, fc_dim=512, **kw):
        super().__init__(obs_shape, num_actions, fc_dim, **kw)
        h, w, c = obs_shape
        if min(h, w) < 36:  # the three convs shrink 36 -> 8 -> 3 -> 1
            raise ValueError(f"the nature architecture needs observations of at least 36x36, got {tuple(obs_shape)}")
        self.scale = ScaleObs(obs_scale)
        self.conv1, self.conv2 = ConvReLU(c, 32, 8, stride=4), ConvReLU(32, 64, 4, stride=2)
        self.conv3 = ConvReLU(64, 64, 3, padding=0)
        flat = _flat_dim(lambda x: self.conv3(self.conv2(self.conv1(x))), (c, h, w))
        self.fc = nn.Sequential(nn.Linear(flat, fc_dim), nn.ReLU())
        if fc_dim != 512:
            self.LAYERS = {**self.LAYERS, "fc": f"(B, {fc_dim}) post-ReLU"}

    def conv_features(self, obs):
        return self.conv3(self.conv2(self.conv1(self.scale(obs))))  # (B, 64, 7, 7)

    def features(self, obs):
        return self.fc(self.conv_features(obs).flatten(1))  # (B, fc_dim)


class MLP(ActorCritic):
    """Flattened observation -> dense ``hidden_sizes`` (256, 256), each followed by ``activation`` (relu | tanh):
    layers ``fc1, fc2, ...``. ``hidden_sizes=()`` leaves the observation flat (Stable-Baselines3's
    ``FlattenExtractor``), for agents whose dense layers are all in the policy and value towers."""

    def __init__(self, obs_shape, num_actions, obs_scale=1 / 255, hidden_sizes=(256, 256), activation="relu", **kw):
        n = 1
        for d in obs_shape:
            n *= d
        layers, width = dense_stack("fc", hidden_sizes, n, activation)
        super().__init__(obs_shape, num_actions, width, activation=activation, **kw)
        self.scale = ScaleObs(obs_scale)
        self.LAYERS = {name: f"(B, {layer[0].out_features}) post-{activation}" for name, layer in layers}
        self.fcs = [name for name, _ in layers]
        for name, layer in layers:
            self.add_module(name, layer)

    def features(self, obs):
        x = self.scale(obs).flatten(1)  # (B, H*W*C) channel-first order for images, (B, D) for vectors
        for name in self.fcs:
            x = getattr(self, name)(x)
        return x  # (B, hidden_sizes[-1])


class Attention(ActorCritic):
    """rl-attention's agent: a conv trunk (``base``: impala, nature or cnn; default nature on 84x84 frames, the
    write-up's Atari set-up with 7x7 maps, else impala), 1x1 convs to ``heads`` spatial-softmax attention maps
    over the last conv features, multiplied into them, then dense 256."""

    LAYERS = {
        "attention_logits": "(B, heads, h, w) pre-softmax; (h, w) = the trunk's last conv map: (H/8, W/8) for impala, "
                            "7x7 for nature on 84x84 frames",
        "attention": "(B, heads, h, w) attention maps, each summing to 1 over h*w",
        "fc": "(B, 256) post-ReLU",
    }

    def __init__(self, obs_shape, num_actions, obs_scale=1 / 255, base=None, heads=2, **kw):
        super().__init__(obs_shape, num_actions, 256, **kw)
        trunks = {"impala": Impala, "nature": Nature, "cnn": GridCNN}
        if base is None:
            base = "nature" if tuple(obs_shape[:2]) == (84, 84) else "impala"
        if base not in trunks:
            raise ValueError(f"attention base {base!r}: expected one of {', '.join(trunks)}")
        trunk_cls = trunks[base]
        self.trunk = trunk_cls(obs_shape, num_actions, obs_scale=obs_scale)
        for unused in ("pi", "v", "fc", "fc_relu"):  # only its conv part is used
            if hasattr(self.trunk, unused):
                delattr(self.trunk, unused)
        with torch.no_grad():
            c, h, w = self.trunk.conv_features(torch.zeros(1, *obs_shape, dtype=torch.uint8)).shape[1:]
        self.attention_logits = nn.Conv2d(c, heads, 1)
        self.attention = SpatialSoftmax()
        self.fc = nn.Sequential(nn.Linear(heads * c * h * w, 256), nn.ReLU())

    def features(self, obs):
        x = self.trunk.conv_features(obs)  # (B, C, h, w)
        attn = self.attention(self.attention_logits(x))  # (B, K, h, w)
        attended = attn.unsqueeze(2) * x.unsqueeze(1)  # (B, K, C, h, w)
        return self.fc(attended.flatten(1))  # (B, 256)


def attention_entropy(maps: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the summed entropy of each attention map (rl-attention's penalty term)."""
    p = maps.flatten(2).clamp_min(1e-12)  # (B, K, h*w)
    return -(p * p.log()).sum(-1).sum(-1).mean()
