"""The built-in registry entries of the gradient compressors."""

from __future__ import annotations

import functools

from gradkit._specs import CompressorSpec
from gradkit.comm._binarize import binarize, reconstruct

__all__ = ["builtin_specs"]


def builtin_specs() -> list[CompressorSpec]:
    """Registry entries of the compressors that ship with gradkit, in display order."""
    return [
        CompressorSpec(
            name="edgedetect",
            paper="N. I. S. Mohammad, EdgeDetect (arXiv:2604.14663)",
            summary="1 bit per coordinate around the median, affine reconstruction τ + α·b",
            compress=functools.partial(binarize, threshold="median", reconstruct="affine"),
            decompress=reconstruct,
            bits_per_coordinate=1.0,
        ),
        CompressorSpec(
            name="scaled_sign",
            paper="Bernstein et al., signSGD (arXiv:1802.04434); Karimireddy et al., error "
            "feedback (arXiv:1901.09847)",
            summary="1 bit per coordinate: the sign, scaled by the mean magnitude α",
            compress=functools.partial(binarize, threshold="zero", reconstruct="sign"),
            decompress=reconstruct,
            bits_per_coordinate=1.0,
        ),
    ]
