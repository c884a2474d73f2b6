"""``python -m policylens.rollouts RUN --episodes N ...``: record (see :mod:`policylens.rollouts.record`)."""
from .record import main

main()
