"""The installed version of intrinsics: one home, pyproject.toml's ``version``, read from the metadata."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("intrinsics")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
