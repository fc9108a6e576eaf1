"""Public test utilities: certify any optimizer against gradkit's conformance suite.

>>> import torch
>>> from gradkit.testing import check_optimizer
>>> check_optimizer(torch.optim.Adam, lr=0.05, supported_impls=(),
...                 supports_complex=True, validates_group_overrides=False)
"""

from gradkit.testing._conformance import check_optimizer, conformance_checks
from gradkit.testing._memory import reachable_tensors, state_bytes

__all__ = ["check_optimizer", "conformance_checks", "reachable_tensors", "state_bytes"]
