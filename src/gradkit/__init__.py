"""gradkit: recent gradient methods for PyTorch, faithful to their papers, fast and tested.

Sub-packages:

* :mod:`gradkit.optim` — optimizers (``torch.optim`` drop-ins) and their functional updates,
  with :func:`gradkit.optim.matrix_param_groups` for the matrix optimizers;
* :mod:`gradkit.transforms` — pieces several methods share: radial projection, coordinate-wise
  clipping, Newton–Schulz whitening and Sinkhorn normalisation, Hessian estimators;
* :mod:`gradkit.mtl` — multi-task gradient aggregators and :func:`gradkit.mtl.mtl_backward`;
* :mod:`gradkit.comm` — 1-bit compression, error feedback, Paillier secure aggregation and a
  DDP sign-compression hook;
* :mod:`gradkit.fed` — EdgeDetect on Flower (apps, strategy) and the CIC-IDS2017 data pipeline;
* :mod:`gradkit.diagnostics` — directional sharpness;
* :mod:`gradkit.registry` — the list of methods that drives tests, ``gradkit list`` and
  ``gradkit bench``;
* :mod:`gradkit.testing` — the public conformance suite, :func:`gradkit.testing.check_optimizer`;
* :mod:`gradkit.bench` — the engine behind ``gradkit bench``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
