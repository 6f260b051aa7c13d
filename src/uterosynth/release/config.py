"""Settings of ``uterosynth release``: the fidelity bar released samples must pass."""

from __future__ import annotations

from pydantic import Field

from ..core.config import StrictModel

__all__ = ["QualityBar", "ReleaseConfig"]


class QualityBar(StrictModel):
    """The fidelity bar: for every requested class, the independent judge must recognise the
    class in the synthetic samples asked for it.

    Attributes:
        min_accuracy: the judge's accuracy on each class's samples must reach this.
        min_wilson_low: and so must the lower end of its Wilson 95 % interval (a bar that a
            handful of lucky samples cannot pass).
    """

    min_accuracy: float = Field(0.90, ge=0, le=1)
    min_wilson_low: float = Field(0.80, ge=0, le=1)

    def describe(self) -> str:
        return (f"every class's judge accuracy >= {self.min_accuracy:g} and the lower end of its Wilson 95 % "
                f"interval >= {self.min_wilson_low:g}")


class ReleaseConfig(StrictModel):
    """``uterosynth release --config``: ``quality`` is the fidelity bar of ``--evaluation``."""

    quality: QualityBar = QualityBar()
