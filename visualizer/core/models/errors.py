"""The model loaders' error: a model reference that cannot be loaded. Its own module so that
every loader (:mod:`~visualizer.core.models.loaders` and the Hugging Face loader it dispatches
to, :mod:`~visualizer.core.models.hf`) raises the same type without importing the other."""


class ModelLoadError(Exception):
    """A model reference that cannot be loaded, with a one-line message for the user."""
