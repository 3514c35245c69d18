"""Evaluation: verification metrics and the field's one-shot protocols.

* :func:`evaluate_episodes`: N-way K-shot episodes drawn from a labelled image set;
* :func:`evaluate_omniglot_runs`: the 20 official 20-way one-shot runs of Lake et al.;
* :func:`evaluate_verification`: ROC AUC, EER and TAR@FAR on a labelled pairs CSV;
* :func:`evaluate_lfw`: the LFW protocol (k folds, threshold from the other folds).
* :func:`evaluate_open_set`: open-set identification (rank-1/5, DIR at FPIR, DET) at gallery scale.

Scores are head logits everywhere: **higher is more alike**.
"""

from twinshot.evaluation.episodes import EpisodeResult, classify_queries, embed_dataset, evaluate_episodes
from twinshot.evaluation.lfw import LfwResult, evaluate_lfw, lfw_embeddings, lfw_protocol, read_lfw_pairs
from twinshot.evaluation.omniglot_runs import OmniglotRunsResult, evaluate_omniglot_runs
from twinshot.evaluation.openset import OpenSetResult, evaluate_open_set, evaluate_open_set_embeddings
from twinshot.evaluation.pairs import Pair, read_pairs_csv
from twinshot.evaluation.verification import (
    VerificationResult,
    embed_sources,
    evaluate_verification,
    pair_scores,
    verification_metrics,
)

__all__ = [
    "EpisodeResult", "evaluate_episodes", "classify_queries", "embed_dataset",
    "OmniglotRunsResult", "evaluate_omniglot_runs",
    "VerificationResult", "evaluate_verification", "verification_metrics", "pair_scores", "embed_sources",
    "Pair", "read_pairs_csv",
    "LfwResult", "evaluate_lfw", "lfw_embeddings", "lfw_protocol", "read_lfw_pairs",
    "OpenSetResult", "evaluate_open_set", "evaluate_open_set_embeddings",
]
