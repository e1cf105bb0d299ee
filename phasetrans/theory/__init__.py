"""The theory layer: from a spectrum and the trained weights to the predicted critical sparsity.

- ``magnitude.py``  ``R(s)``, the distance to the global magnitude pruning (:class:`MagnitudeCurve`);
- ``spectrum.py``   the Hessian spectrum as a per-probe quadrature (SLQ, eigenvalues, a density);
- ``width.py``      ``Φ(R)``, the projected width, with the negative-eigenvalue policy and ``p0``;
- ``critical.py``   the exact root of ``s = Φ(R(s))``, the window, the bootstrap, :class:`Prediction`;
- ``reference.py``  the published pipeline, emulated (``critical_sparsity(..., reference_emulation=True)``);
- ``geometry/``     Gaussian widths, statistical dimensions, projectors, Monte Carlo (THEORY §5).

Imports only from the base layer (``_checks``, ``_io``, ``_bisect``, ``_timing``, ``params``).
"""

from . import geometry
from .critical import (
    Curve,
    Prediction,
    critical_sparsity,
    reference_critical_sparsity,
)
from .magnitude import MagnitudeCurve
from .reference import ReferenceSolution, reference_pipeline
from .spectrum import Spectrum, parse_spectrum
from .width import NEGATIVE_POLICIES, Negative, width_fraction

__all__ = [
    "geometry",
    "Curve",
    "MagnitudeCurve",
    "NEGATIVE_POLICIES",
    "Negative",
    "Prediction",
    "ReferenceSolution",
    "Spectrum",
    "critical_sparsity",
    "parse_spectrum",
    "reference_critical_sparsity",
    "reference_pipeline",
    "width_fraction",
]
