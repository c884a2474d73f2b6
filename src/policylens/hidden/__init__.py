"""Analyses of a recurrent agent's hidden state: :mod:`~policylens.hidden.hx` (z-scored hx -> PCA/ICA/NMF, k-means,
t-SNE; simulated states on the real components) and :mod:`~policylens.hidden.swap` (swapping hidden-state
directions, with paired statistics and a random control, in the environment and in the simulator).

Each analysis is a package with one layout: ``core.py`` (the analysis), ``cli.py`` (its command, exposed as
``policylens sim hx`` / ``policylens sim swap``), ``plots.py`` (its figures) and, where it writes one, ``report.py``.
"""
