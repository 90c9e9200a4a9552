"""The optimization pipeline: candidates (quantize, prune, distil), validate, select, package, report."""

from edgefleet.optimize.config import BuildConfig
from edgefleet.optimize.errors import BuildError, BuildInputError
from edgefleet.optimize.pipeline import BuildResult, ClassResult, run_build

__all__ = ["BuildConfig", "BuildError", "BuildInputError", "BuildResult", "ClassResult", "run_build"]
