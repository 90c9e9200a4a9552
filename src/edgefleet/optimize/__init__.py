"""The optimization pipeline: candidates (quantize, students), validate, measure per class, select."""

from edgefleet.optimize.config import BuildConfig
from edgefleet.optimize.errors import BuildError, BuildInputError
from edgefleet.optimize.pipeline import BuildResult, ClassResult, run_build

__all__ = ["BuildConfig", "BuildError", "BuildInputError", "BuildResult", "ClassResult", "run_build"]
