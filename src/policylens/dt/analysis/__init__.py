"""Analyses of a decision transformer (Decision Transformer Interpretability): logit attribution, ablation,
patching, RTG scans, circuits.

>>> from policylens.dt import load_dt
>>> from policylens.dt import analysis as A
>>> model = load_dt("runs/dt")
>>> window = A.inputs_from_env_state(model, obs, rtgs=0.9)          # one live step, DTInputs
>>> c = A.logit_contributions(model, window)                        # c.components, c.values (C, A)
>>> c.preference("forward", "right")                                # (C,), sums to the logit difference
>>> A.state_contribution_map(model, window, ("forward", "right"))    # per cell of the 7x7 view
>>> with A.ablate(model, ["blocks.0.attn.head1"], mode="mean", means=A.component_means(model, batch)):
...     model(*window.args())
>>> A.ablation_table(model, env, ["blocks.0.attn.head0", "blocks.0.mlp"], rtgs=(-1, 0, 0.9), episodes=100)
>>> A.patch(model, window.with_rtg([0.9]), window.with_rtg([-1]), "blocks.0.attn.hook_z")
>>> A.rtg_scan(model, window)                                       # logits, preferences, components vs RTG
>>> A.circuit_maps(model), A.embedding_projections(model)           # QK/OV over the view; RTG/time embeddings

``policylens dt analyze RUN`` runs them all into ``RUN/analysis/`` and writes the section of ``RUN/report.md``.
The names load on first use (the model module imports transformer_lens, ~20 s).
"""
from __future__ import annotations

import importlib

_EXPORTS = {  # exported name -> module
    **dict.fromkeys(("DTInputs", "as_inputs", "inputs_from_env_state"), "inputs"),
    **dict.fromkeys(("Contributions", "logit_contributions", "preference_direction", "state_contribution_map",
                     "StateMap", "component_names", "readout"), "attribution"),
    **dict.fromkeys(("ablate", "component_means", "ablation_table", "resolve", "component_list"), "ablation"),
    **dict.fromkeys(("patch", "patched_share", "Patching"), "patching"),
    **dict.fromkeys(("rtg_scan", "RTGScan", "preference_pairs"), "scan"),
    **dict.fromkeys(("circuit_maps", "embedding_projections", "entity_vectors", "full_qk", "full_ov",
                     "ENTITIES"), "circuits"),
    **dict.fromkeys(("by_situation", "front_entities", "attention_to_rtg", "edit_ahead"), "situations"),
    **dict.fromkeys(("analyze", "AnalyzeConfig", "AblateConfig", "load_means"), "analyze"),
    **dict.fromkeys(("analysis_section", "ablation_markdown", "write_report"), "report"),
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
