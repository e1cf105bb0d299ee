"""Transition shim: convex geometry now lives in :mod:`phasetrans.theory.geometry` (one concept a
file). Every name ``phasetrans.geometry.X`` offered before is re-exported here."""

from .theory.geometry import (  # noqa: F401  (transition shim)
    MCEstimate,
    RecoveryTransition,
    __all__,  # noqa: F401  (transition shim)
    circular_cone_projector,
    circular_cone_statdim,
    ellipsoid_cone_projector,
    ellipsoid_cone_statdim_mc,
    ellipsoid_width,
    ellipsoid_width_bounds,
    gaussian_width_mc,
    kinematic_window,
    l1_descent_cone_projector,
    l1_descent_cone_statdim,
    l1_quadratic_support,
    l1_quadratic_width,
    l1_recovery_transition,
    project_onto_ellipsoid,
    projected_width_sq,
    statistical_dimension_mc,
    transition_midpoint,
)
