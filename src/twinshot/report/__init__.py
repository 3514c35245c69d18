"""The verification report: ROC/DET, score histograms, FAR/FRR with intervals, N-way
accuracy, worst errors and an embedding map, as one self-contained HTML page plus PNGs
and JSON (``twinshot report``)."""

from twinshot.report.report import FILES, ReportResult, build_report, embedding_map
from twinshot.report.scores import ScoredPairs, all_pairs, folder_scores, pairs_scores

__all__ = ["build_report", "ReportResult", "FILES", "embedding_map", "ScoredPairs", "all_pairs", "folder_scores", "pairs_scores"]
