"""Writer-dependent signature verification: per-writer classifiers on the features of a
writer-independent network (Hafemann et al. 2017), and a handcrafted baseline descriptor.

* :func:`image_features`: ``(N, F)`` features of images at a model layer (or HOG);
* :class:`WriterClassifier`, :func:`writer_scores`: an RBF SVM per writer, its references
  vs a cohort of other writers' genuine signatures;
* :func:`score_claims`: SVM scores of questioned images against one writer's reference images;
* :func:`hog_features`: histograms of oriented gradients + ink density per cell;
* :class:`ClaimFusion`, :func:`model_fusion`: the SVM's score plus a pair model's, with the
  weight stored in the SVM model's ``extra["claims_fusion"]`` (``--scoring fused``).

Used by ``twinshot evaluate cedar-claims --scoring svm``
(:func:`twinshot.evaluation.claims.cedar_writer_dependent`).
"""

from twinshot.writer_dependent.claims import score_claims
from twinshot.writer_dependent.classifier import Standardiser, SVMConfig, WriterClassifier, writer_scores
from twinshot.writer_dependent.features import FEATURE_LAYERS, image_features
from twinshot.writer_dependent.fusion import ClaimFusion, model_fusion
from twinshot.writer_dependent.handcrafted import hog_features

__all__ = [
    "FEATURE_LAYERS", "image_features", "hog_features",
    "SVMConfig", "Standardiser", "WriterClassifier", "writer_scores", "score_claims",
    "ClaimFusion", "model_fusion",
]
