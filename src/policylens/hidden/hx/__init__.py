"""Hidden-state analysis: :mod:`.core` (z-scoring, PCA/ICA/NMF directions, k-means, t-SNE, projections, saved
analyses), :mod:`.cli` (``policylens sim hx``), :mod:`.plots` (its figures)."""
