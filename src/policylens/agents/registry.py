"""A registry of architectures, and ``build(config)`` from a checkpoint's ``agent`` config."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .base import ActorCritic
from .nets import MLP, Attention, Clear, GridCNN, Impala, Nature

ARCHITECTURES: dict = {"impala": Impala, "clear": Clear, "cnn": GridCNN, "nature": Nature, "mlp": MLP, "attention": Attention}


def register(name: str, cls) -> None:
    """Add an architecture: ``cls(obs_shape, num_actions, obs_scale=..., recurrent=..., hidden=..., **options)``."""
    ARCHITECTURES[name] = cls


@dataclass
class AgentConfig:
    arch: str = "impala"
    """architecture name (see ARCHITECTURES)"""
    obs_shape: tuple = (64, 64, 3)
    """observation shape (H, W, C) as the env gives it"""
    num_actions: int = 15
    """size of the discrete action space"""
    obs_scale: float = 1 / 255
    """factor from uint8 observation to network input"""
    recurrent: bool = False
    """fc -> GRU before the heads"""
    hidden: int = 64
    """GRU state size when recurrent"""
    options: dict = field(default_factory=dict)
    """architecture options (e.g. attention's base/heads, mlp's hidden_sizes/activation), and for every
    architecture: pi_hidden / v_hidden (dense towers before the heads), activation, q_values (pi gives
    Q-values, v their maximum), separate_value (the value gets its own trunk)"""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["obs_shape"] = list(self.obs_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AgentConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        cfg = cls(**known)
        cfg.obs_shape = tuple(cfg.obs_shape)
        return cfg


def build(config: "AgentConfig | dict") -> ActorCritic:
    if isinstance(config, dict):
        config = AgentConfig.from_dict(config)
    if config.arch == "decision_transformer":
        raise ValueError("this checkpoint is a decision transformer, not a PPO agent: load it with "
                         "policylens.dt.load_dt(RUN) and use the `policylens dt ...` commands")
    if config.arch not in ARCHITECTURES:
        raise ValueError(f"unknown agent architecture {config.arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    cls = ARCHITECTURES[config.arch]
    options = dict(config.options)
    separate_value = options.pop("separate_value", False)  # the value gets its own trunk of the same architecture
    agent = cls(config.obs_shape, config.num_actions, obs_scale=config.obs_scale,
                recurrent=config.recurrent, hidden=config.hidden, **options)
    if separate_value:
        trunk_options = {k: v for k, v in options.items() if k not in ("pi_hidden", "v_hidden", "q_values")}
        agent.attach_value_trunk(cls(config.obs_shape, config.num_actions, obs_scale=config.obs_scale, **trunk_options))
    return agent
