"""Tracking: video state, memory selection, Kalman motion model and candidate selectors."""
