"""samurai: zero-shot video object tracking and segmentation (SAM 2 / SAM 2.1 + SAMURAI)."""
