"""The bundled demo model: synthetic dataset, pixel classifier, training and evaluation scripts (see README.md)."""
