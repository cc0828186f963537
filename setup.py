"""Packages: visualizer/ plus the repository-root folders resources/ and sample_models/, mapped
into the package so that a plain ``pip install`` carries them (visualizer.core.resources finds
them there, or beside visualizer/ in a checkout). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

BUNDLED = {"visualizer.resources": "resources", "visualizer.sample_models": "sample_models"}

setup(
    packages=find_packages(include=["visualizer", "visualizer.*"]) + list(BUNDLED),
    package_dir=BUNDLED,
)
