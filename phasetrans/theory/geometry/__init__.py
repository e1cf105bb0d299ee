"""Convex geometry: Gaussian widths and statistical dimensions (THEORY §2, §5).

Closed forms (exact to rounding or to a stated tolerance), exact projectors onto the cones that
matter here, and Monte-Carlo estimators with standard errors that use them. The Monte-Carlo
estimators are the small-scale references against which the closed forms that the predictor uses
at large scale (:func:`projected_width_sq`) are measured; see ``docs/GEOMETRY.md``.

One concept a file:

- ``widths.py``       ``projected_width_sq`` (Φ·D), ``ellipsoid_width`` (exact), its bounds;
- ``window.py``       ``kinematic_window`` (the sharpness of a transition);
- ``statdims.py``     closed-form statistical dimensions (circular cone, l1 descent cone);
- ``projectors.py``   exact projectors (ellipsoid, circular cone, l1 descent cone, ellipsoid cone);
- ``montecarlo.py``   ``MCEstimate``, statistical dimension and Gaussian width by Monte Carlo;
- ``l1_quadratic.py`` the l1-penalised quadratic sublevel set (cvxpy support function, width);
- ``recovery.py``     the Donoho–Tanner transition of l1 recovery and its 50% point;
- ``_arrays.py``      input conversion shared by the files above.

References: Amelunxen, Lotz, McCoy, Tropp, "Living on the edge: phase transitions in convex
programs with random data" (Information and Inference, 2014); Larsen, Fort, Becker, Ganguli,
"How many degrees of freedom do we need to train deep networks" (ICLR 2022); Donoho, Tanner,
"Counting faces of randomly projected polytopes when the projection radically lowers dimension"
(J. AMS, 2009); Zhang, Zhang, Sun, Liu, "How sparse can we prune a deep network" (NeurIPS 2024).
"""

from .l1_quadratic import l1_quadratic_support, l1_quadratic_width
from .montecarlo import (
    MCEstimate,
    ellipsoid_cone_statdim_mc,
    gaussian_width_mc,
    statistical_dimension_mc,
)
from .projectors import (
    circular_cone_projector,
    ellipsoid_cone_projector,
    l1_descent_cone_projector,
    project_onto_ellipsoid,
)
from .recovery import RecoveryTransition, l1_recovery_transition, transition_midpoint
from .statdims import circular_cone_statdim, l1_descent_cone_statdim
from .widths import ellipsoid_width, ellipsoid_width_bounds, projected_width_sq
from .window import kinematic_window

__all__ = [
    "MCEstimate",
    "projected_width_sq",
    "kinematic_window",
    "ellipsoid_width",
    "ellipsoid_width_bounds",
    "circular_cone_statdim",
    "l1_descent_cone_statdim",
    "project_onto_ellipsoid",
    "circular_cone_projector",
    "l1_descent_cone_projector",
    "ellipsoid_cone_projector",
    "statistical_dimension_mc",
    "gaussian_width_mc",
    "ellipsoid_cone_statdim_mc",
    "l1_quadratic_support",
    "l1_quadratic_width",
    "RecoveryTransition",
    "l1_recovery_transition",
    "transition_midpoint",
]
