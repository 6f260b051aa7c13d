"""uterosynth: diffusion models for synthetic sagittal T2-weighted female pelvic MRI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("uterosynth")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
