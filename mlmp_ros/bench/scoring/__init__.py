"""Scoring: segmentation metrics, and scoring a stream at camera rate."""
