"""``python -m policylens.evaluate RUN ...`` (the same as ``policylens evaluate``)."""
import sys

from .cli import main

sys.exit(main())
