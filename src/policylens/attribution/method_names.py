"""The attribution methods' names, importable without torch (the CLI's ``--help`` lists them)."""

METHODS = ("saliency", "grad_x_act", "ig", "smoothgrad", "vargrad")
