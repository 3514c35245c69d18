"""Evaluation: verification metrics and the field's one-shot protocols."""
