"""Inference with trained models: batch tagging with the student (`tagging`) and teacher regions
(`detect`). Both store their output in the project as suggestions / regions of a model version."""
