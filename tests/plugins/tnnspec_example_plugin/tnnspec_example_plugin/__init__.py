"""An example tnnspec plugin: the ``leaky_tanh`` cell and the ``clip`` op.

Importing this package registers nothing: the entry points in pyproject.toml name the modules
(:mod:`.cells`) and callables (:func:`.ops.register`) that do. Neither imports torch: the builders
in :mod:`.torch_builders` are named by import path and imported only when a model is compiled.
:mod:`.reference` holds NumPy references of both.
"""

__version__ = "0.1.0"
