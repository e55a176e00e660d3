"""featcache: a feature cache and light fusion trainer for measuring how robust
speech-and-text emotion classifiers are to perturbations of their input."""

__version__ = "0.1.0"
