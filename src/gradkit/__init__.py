"""gradkit: recent gradient methods for PyTorch, faithful to their papers, fast and tested.

Sub-packages:

* :mod:`gradkit.optim` — optimizers (``torch.optim`` drop-ins) and their functional updates;
* :mod:`gradkit.registry` — the list of methods that drives tests, ``gradkit list`` and
  ``gradkit bench``;
* :mod:`gradkit.testing` — the public conformance suite, :func:`gradkit.testing.check_optimizer`;
* :mod:`gradkit.bench` — the engine behind ``gradkit bench``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
