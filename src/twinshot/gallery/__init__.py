"""One-shot recognition against a persistent gallery: enroll, identify, verify, search,
calibrated thresholds, open-set metrics. See ``docs/gallery.md``."""

from twinshot.gallery.calibration import (
    Calibration,
    CalibrationReport,
    bootstrap_rates,
    calibrate_scores,
    expected_calibration_error,
    fit_calibration,
    fit_isotonic,
    fit_platt,
    fit_threshold,
)
from twinshot.gallery.calibration import DEFAULT_THRESHOLD
from twinshot.gallery.audit import Actor
from twinshot.gallery.check import CheckReport, check_gallery
from twinshot.gallery.files import describe, reembed, remove_identity, resolve_model
from twinshot.gallery.gallery import APPROXIMATE_ABOVE, RULES, Gallery, verify_images
from twinshot.gallery.claims import ClaimVerification, UnknownIdentity
from twinshot.gallery.results import Candidate, EnrollResult, Identification, Neighbour, SearchResult, Verification
from twinshot.gallery.index import HNSWConfig
from twinshot.gallery.openset import OpenSetReport, evaluate_open_set, open_set_metrics, threshold_at_fpir
from twinshot.gallery.store import IdentityRecord
from twinshot.gallery.embedding import Embedder, TorchEmbedder
from twinshot.gallery.inference import INFERENCE, load_embedder

__all__ = [
    "Actor", "CheckReport", "check_gallery", "APPROXIMATE_ABOVE", "ClaimVerification", "DEFAULT_THRESHOLD", "UnknownIdentity", "INFERENCE", "RULES", "Embedder", "TorchEmbedder", "load_embedder", "Calibration", "CalibrationReport", "Candidate",
    "EnrollResult", "Gallery", "HNSWConfig", "Identification", "IdentityRecord", "Neighbour",
    "OpenSetReport", "SearchResult", "Verification", "bootstrap_rates", "calibrate_scores",
    "evaluate_open_set", "expected_calibration_error", "fit_calibration", "fit_isotonic", "fit_platt",
    "describe", "fit_threshold", "open_set_metrics", "reembed", "remove_identity", "resolve_model", "threshold_at_fpir", "verify_images",
]
