"""The optimization pipeline: candidates (quantize, prune, distil), validate, select, package, report."""

from edgefleet.build.config import BuildConfig
from edgefleet.build.errors import BuildError, BuildInputError
from edgefleet.build.pipeline import BuildResult, ClassResult, run_build

__all__ = ["BuildConfig", "BuildError", "BuildInputError", "BuildResult", "ClassResult", "run_build"]
