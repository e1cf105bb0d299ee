"""phasetrans: predict how sparse a trained network can be pruned, from its Hessian spectrum and
weight magnitudes (Zhang et al., NeurIPS 2024; Larsen et al., ICLR 2022; Amelunxen et al., 2014),
and validate the prediction by pruning.

The package re-exports its public names here (``import phasetrans as pt``); the layers live in
folders (docs/DEVELOPING.md): ``linalg`` (operators, spectral estimators) → ``theory`` (geometry,
the critical sparsity) → ``prune`` / ``train`` / ``evaluate`` → ``predict`` (and ``oneshot``) → ``report`` → ``cli``.
"""

import sys as _sys

# _cli_env first: the command line's OpenMP policy must be set before torch loads
from . import _cli_env, data, models
from ._checks import fingerprints_equal, model_fingerprint, preserve_model
from ._threads import set_threads
from ._version import __version__
from .data import load_dataset
from .evaluate import evaluate_accuracy, evaluate_correct, evaluate_loss
from .finetune import finetune_masked
from .linalg import (
    DenseOperator,
    Eigen,
    Estimate,
    FunctionOperator,
    HessianOperator,
    Operator,
    SpectralDensity,
    as_operator,
    slq,
    top_eigenvalues,
    trace,
)
from .models import build_model
from .oneshot import predict_oneshot
from .params import prunable_parameters, pruned_count, select_parameters
from .predict import (
    ZeroMassEstimate,
    batch_loss_std,
    estimate_eps,
    estimate_zero_mass,
    predict_sparsity,
)
from .prune import (
    CRITERIA,
    Threshold,
    ThresholdSpread,
    apply_masks,
    criterion_masks,
    find_loss_threshold,
    find_threshold,
    from_torch_prune,
    magnitude_masks,
    mask_sparsity,
    prepare_criterion,
    pruned,
    pruning_radius,
    refit_steps,
    sweep,
    threshold_spread,
    to_torch_prune,
)
from .report import Report, layer_kept_fractions, plots, pruning_curve, validate
from .theory import (
    Curve,
    MagnitudeCurve,
    Prediction,
    critical_sparsity,
    geometry,
    reference_critical_sparsity,
    width_fraction,
)
from .train import TrainHistory, lr_at_epoch, train_l1

# ``phasetrans.geometry`` and ``phasetrans.plots`` were modules before the layers became folders;
# research code imports them by those names (``from phasetrans.geometry import ...``).
_sys.modules[__name__ + ".geometry"] = geometry
_sys.modules[__name__ + ".plots"] = plots

