"""gradkit optimizers: ``torch.optim`` drop-ins, each a thin shell over a functional update.

Every optimizer supports param groups, ``state_dict``/``load_state_dict``, closures, LR
schedulers, ``maximize``, a 0-d tensor ``lr``, ``foreach`` (the default) and ``fused=True``
(a ``torch.compile``'d single-graph step), and a non-finite-gradient policy (``nonfinite``).
"""

from gradkit.optim._adabelief import AdaBelief
from gradkit.optim._adamp import SGDP, AdamP
from gradkit.optim._base import GradkitOptimizer, NonFiniteGradientError
from gradkit.optim._diffgrad import DiffGrad

__all__ = [
    "SGDP",
    "AdaBelief",
    "AdamP",
    "DiffGrad",
    "GradkitOptimizer",
    "NonFiniteGradientError",
]
