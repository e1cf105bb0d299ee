"""phasetrans: predict how sparse a trained network can be pruned, from its Hessian spectrum and
weight magnitudes (Zhang et al., NeurIPS 2024; Larsen et al., ICLR 2022; Amelunxen et al., 2014),
and validate the prediction by pruning."""

from . import data, geometry, models, plots
from ._checks import fingerprints_equal, model_fingerprint, preserve_model
from .data import load_dataset
from .models import build_model
from .operators import DenseOperator, HessianOperator, Operator, as_operator
from .params import prunable_parameters, select_parameters
from .pipeline import Report, layer_kept_fractions, pruning_curve, validate
from .prediction import (
    Curve,
    MagnitudeCurve,
    Prediction,
    ZeroMassEstimate,
    batch_loss_std,
    critical_sparsity,
    estimate_eps,
    estimate_zero_mass,
    predict_sparsity,
    width_fraction,
)
from .pruning import (
    apply_masks,
    magnitude_masks,
    mask_sparsity,
    pruned,
    pruned_count,
    to_torch_prune,
)
from .spectral import Eigen, Estimate, SpectralDensity, slq, top_eigenvalues, trace
from .threshold import Threshold, find_loss_threshold, find_threshold, sweep
from .training import (
    TrainHistory,
    evaluate_accuracy,
    evaluate_loss,
    finetune_masked,
    lr_at_epoch,
    train_l1,
)

__version__ = "0.1.0"
