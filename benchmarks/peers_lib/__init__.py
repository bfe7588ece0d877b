"""Helpers of benchmarks/peers.py: one child script per peer, shared frame loading and masks.

The child scripts run in the peers' own virtual environments, so this package imports only
numpy, torch and Pillow at top level (``common.py``); only ``child_ours.py`` imports samurai.
"""
