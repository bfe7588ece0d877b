"""Input / output helpers: frame decoding, preprocessing, masks, dataset formats."""
