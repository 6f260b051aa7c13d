"""Per-subject anatomy sampling: the order of random draws is the reproducibility contract."""

import pytest
from pydantic import ValidationError

from uterosynth.core.seeding import numpy_rng
from uterosynth.phantom.anatomy import sample_subject, subject_row
from uterosynth.phantom.config import Choice, Integers, PhantomConfig, Uniform

# Drawn by the sampler before its priors became configuration data (every lesion switched on):
# orientation, version, flexion, myoma types, cysts, ovaries, uterus length, bladder volume, SNR,
# retries, bowel seed and the generator's next draw after the subject (which pins the number and
# order of draws; rounded values keep the check independent of the CPU's last-bit maths).
EXPECTED = [
    ("RVAF", -30.92, 78.96, "intramural;intramural;intramural", 3, 1, 81.7, 41.7, 34.4, 8, 764914198, 0.419310870882),
    ("RVAF", -43.61, 35.0, "submucosal;submucosal", 2, 1, 69.8, 150.4, 32.28, 0, 416176546, 0.704540332703),
    ("RVAF", -22.71, 67.13, "intramural;subserosal", 2, 2, 66.6, 69.1, 35.48, 23, 2003280448, 0.306497580201),
    ("AVAF", 45.11, 64.29, "intramural;submucosal;submucosal", 2, 2, 91.8, 58.3, 32.42, 9, 834228207, 0.711920394751),
]


def _summary(cfg, k):
    rng = numpy_rng(0, k)
    s = sample_subject(rng, cfg, k)
    r = subject_row(s)
    return (r["orientation"], r["version_angle"], r["flexion_angle"], r["myoma_types"], r["cyst_count"], r["ovaries"],
            r["uterus_length_mm"], r["bladder_volume_ml"], r["snr"], s.sampling_retries, s.bowel_seed,
            round(float(rng.random()), 12))


@pytest.mark.parametrize("k", range(len(EXPECTED)))
def test_draws_reproduce_the_stored_subjects(k):
    cfg = PhantomConfig(version=1, anatomy={"p_myoma": 1.0, "p_cyst": 1.0, "p_gas": 1.0})
    assert _summary(cfg, k) == pytest.approx(EXPECTED[k])


def test_priors_are_configuration():
    cfg = PhantomConfig(version=1, priors={"vagina": {"tilt_deg": {"lo": -30.0, "hi": -29.0}},
                                "uterus": {"version_av": {"lo": 60.0, "hi": 61.0}}})
    s = sample_subject(numpy_rng(0, 0), cfg, 0, orientation="AVAF")
    assert -30.0 <= s.vagina_tilt < -29.0 and 60.0 <= s.version_angle < 61.0
    assert PhantomConfig.model_validate(cfg.model_dump()) == cfg


def test_uniform_bounds_in_order():
    with pytest.raises(ValidationError, match="lower bound"):
        Uniform(lo=2.0, hi=1.0)


def test_integers_upper_bound_is_exclusive():
    with pytest.raises(ValidationError, match="exclusive"):
        Integers(lo=3, hi=3)


def test_choice_needs_one_probability_per_value():
    with pytest.raises(ValidationError, match="one per value"):
        Choice(values=("a", "b"), p=(1.0,))
    with pytest.raises(ValidationError, match="sum to 1"):
        Choice(values=("a", "b"), p=(0.5, 0.6))


def test_the_largest_myoma_is_named_by_kind_and_size_to_5_mm():
    cfg = PhantomConfig(version=1, anatomy={"p_myoma": 1.0})
    for k in range(6):
        row = subject_row(sample_subject(numpy_rng(0, k), cfg, k))
        kind, size, unit = row["largest_myoma"].split()
        assert kind in row["myoma_types"].split(";") and unit == "mm"
        assert int(size) % 5 == 0 and abs(int(size) - row["myoma_max_diameter_mm"]) <= 2.5
    none = PhantomConfig(version=1, anatomy={"p_myoma": 0.0})
    assert subject_row(sample_subject(numpy_rng(0, 0), none, 0))["largest_myoma"] == "none"
