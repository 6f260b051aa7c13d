"""Digital female-pelvis phantom: labelled sagittal T2-weighted volumes with known ground truth.

``write_cohort(PhantomConfig(...), out)`` writes a cohort in the UMD layout (see
:mod:`uterosynth.phantom.cohort`); ``estimate_orientation(seg, affine)`` recovers the uterine
orientation class from a label map alone.
"""

from .cohort import CohortSummary, subject_id, write_cohort
from .config import FIELD_STRENGTHS, ORIENTATIONS, PhantomConfig
from .orientation import OrientationEstimate, estimate_orientation
from .subject import generate_subject

__all__ = [
    "FIELD_STRENGTHS",
    "ORIENTATIONS",
    "CohortSummary",
    "OrientationEstimate",
    "PhantomConfig",
    "estimate_orientation",
    "generate_subject",
    "subject_id",
    "write_cohort",
]
