"""What the simulator is used for, one package per analysis, each with one layout (as
:mod:`policylens.dt.analysis`): ``core.py`` (the analysis, a Python API), ``cli.py`` (its ``policylens sim``
command: a config dataclass, ``run_*`` and ``main``), ``plots.py`` (its figures) and further modules named for
what they hold.

- :mod:`~.fidelity`: held-out fidelity against a VAE+LSTM baseline (``reroll``: the environment drawn again;
  ``closed_loop``: agreement when the agent drives)
- :mod:`~.sample`: imagined rollouts as arrays, videos and the trajectory explorer
- :mod:`~.optimize`: generative visualisation (latents optimised for a target)
- :mod:`~.saliency`: saliency through time
- :mod:`~.behaviours`: behaviour clusters, cross-correlation vs cross-causation
- :mod:`~.agents`: other agents inside the simulator against the environment (``report``: tables and figures)
- :mod:`~.report`: one markdown report of what the commands found

The hidden-state analyses (``sim hx``, ``sim swap``) live in :mod:`policylens.hidden`.
"""
