"""Transition shim: the prediction now lives in :mod:`phasetrans.theory` (``magnitude``,
``spectrum``, ``width``, ``critical``, ``reference``) and :mod:`phasetrans.predict` (the
model-level predictor). Every name imported from ``phasetrans.prediction`` before, public and
private, is re-exported here."""

from .predict import (  # noqa: F401  (transition shim)
    ZeroMassEstimate,
    _eps_from_operator,  # noqa: F401  (transition shim)
    batch_loss_std,
    estimate_eps,
    estimate_zero_mass,
    predict_sparsity,
)
from .theory.critical import (  # noqa: F401  (transition shim)
    Curve,
    Prediction,
    _floats,  # noqa: F401  (transition shim)
    critical_sparsity,
)
from .theory.critical import bootstrap_uncertainty as _bootstrap  # noqa: F401  (transition shim)
from .theory.critical import check_eta as _check_eta  # noqa: F401  (transition shim)
from .theory.critical import crossing_curve as _curve  # noqa: F401  (transition shim)
from .theory.critical import exact_root as _solve  # noqa: F401  (transition shim)
from .theory.magnitude import _CHUNK, MagnitudeCurve  # noqa: F401  (transition shim)
from .theory.magnitude import weights_tensor as _weights_tensor  # noqa: F401  (transition shim)
from .theory.reference import reference_density as _reference_density  # noqa: F401  (transition shim)
from .theory.reference import reference_pipeline as _reference_emulation  # noqa: F401  (transition shim)
from .theory.spectrum import Spectrum as _Spectrum  # noqa: F401  (transition shim)
from .theory.spectrum import parse_spectrum as _parse_spectrum  # noqa: F401  (transition shim)
from .theory.spectrum import to_numpy as _to_numpy  # noqa: F401  (transition shim)
from .theory.width import NEGATIVE_POLICIES, width_fraction  # noqa: F401  (transition shim)
from .theory.width import Phi as _Phi  # noqa: F401  (transition shim)
from .theory.width import apply_negative_policy as _apply_policy  # noqa: F401  (transition shim)
from .theory.width import check_eps as _check_eps  # noqa: F401  (transition shim)
from .theory.width import check_negative as _check_negative  # noqa: F401  (transition shim)
from .theory.width import check_zero_mass as _check_zero_mass  # noqa: F401  (transition shim)

__all__ = [
    "MagnitudeCurve",
    "Curve",
    "Prediction",
    "ZeroMassEstimate",
    "critical_sparsity",
    "predict_sparsity",
    "width_fraction",
    "estimate_zero_mass",
    "batch_loss_std",
]
