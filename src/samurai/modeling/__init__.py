"""Pure ``nn.Module`` building blocks of SAM 2 / SAM 2.1 (no per-video state)."""
