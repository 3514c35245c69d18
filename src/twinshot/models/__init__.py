"""Models: encoders, heads, the Siamese network, and saving/loading them."""

from twinshot.models.encoders import ENCODERS, CompactEncoder, Encoder, KochEncoder
from twinshot.models.heads import HEADS, CosineHead, EuclideanHead, Head, WeightedL1Head
from twinshot.models.io import fingerprint, load_model, model_metadata, resolve_model_dir, save_model, shipped_models
from twinshot.models.siamese import ModelSpec, SiameseNetwork, build_model
from twinshot.models.signet import SigNetEncoder
from twinshot.models.pairs import PairInputEncoder, TwoChannelDichotomyHead  # noqa: E402  (registers pair_input, twochannel_dichotomy)
from twinshot.models.ensemble import EnsembleEncoder  # noqa: E402  (registers ensemble)

__all__ = [
    "ENCODERS", "HEADS", "Encoder", "Head", "KochEncoder", "CompactEncoder",
    "EuclideanHead", "CosineHead", "WeightedL1Head", "ModelSpec", "SiameseNetwork", "SigNetEncoder", "PairInputEncoder", "TwoChannelDichotomyHead", "EnsembleEncoder",
    "build_model", "save_model", "load_model", "model_metadata", "resolve_model_dir",
    "fingerprint", "shipped_models",
]
