"""Scores of the test split: accuracy, per-class and confusion numbers."""
