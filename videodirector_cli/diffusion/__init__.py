"""Tensor math: models, DDIM, inversion, guidance, attention control, editing."""
