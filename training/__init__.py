"""Datasets, synthetic catalog, the VGG16 cascade, training, evaluation, model registry."""
