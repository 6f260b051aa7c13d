"""Phantom version 2: continuous angles up to the class boundary, cycle, texture and acquisition artefacts."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from uterosynth.core.seeding import numpy_rng
from uterosynth.phantom import PhantomConfig, generate_subject
from uterosynth.phantom.anatomy import sample_subject, subject_row
from uterosynth.phantom.artifacts import Imaging, acquire, coil_shading, mix_slices
from uterosynth.phantom.tissues import Tissue

SMALL = {"matrix": (128, 128), "spacing": (2.0, 2.0, 4.0), "slices": 9, "supersample": 1}


def _angles(cfg: PhantomConfig, n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, list[str]]:
    subjects = [sample_subject(numpy_rng(seed, k), cfg, k) for k in range(n)]
    return (np.array([s.version_angle for s in subjects]), np.array([s.flexion_angle for s in subjects]),
            [s.orientation for s in subjects])


def test_v2_angles_reach_the_boundary_and_labels_follow_their_signs():
    va, fa, cls = _angles(PhantomConfig(), 160)
    assert np.abs(va).min() < 4 and np.abs(fa).min() < 4  # near-neutral uteri exist
    assert np.mean((np.abs(va) < 10) | (np.abs(fa) < 10)) > 0.1
    for v, f, c in zip(va, fa, cls, strict=True):
        assert (v > 0) == c.startswith("AV") and (f > 0) == c.endswith("AF")


def test_difficulty_zero_keeps_the_version_1_gaps():
    va, fa, _ = _angles(PhantomConfig(anatomy={"difficulty": 0.0}), 120)
    assert np.abs(va).min() >= 11.9 and np.abs(fa).min() >= 20
    v1, f1, _ = _angles(PhantomConfig(version=1, anatomy={"difficulty": 1.0}), 40)
    assert np.abs(v1).min() >= 11.9  # version 1 ignores the difficulty knob


def test_cycle_phase_sets_endometrial_thickness():
    cfg = PhantomConfig()
    by_phase: dict[str, list[float]] = {}
    for k in range(120):
        s = sample_subject(numpy_rng(3, k), cfg, k)
        by_phase.setdefault(s.cycle_phase, []).append(s.uterus.endometrium_mm)
    assert set(by_phase) == {"menstrual", "proliferative", "secretory", "postmenopausal"}
    assert np.mean(by_phase["secretory"]) > 2 * np.mean(by_phase["menstrual"])
    row = subject_row(sample_subject(numpy_rng(3, 0), cfg, 0))
    assert row["cycle_phase"] in by_phase and "phase_encode" in row


def test_subject_k_is_the_same_for_any_cohort_size():
    a = generate_subject(PhantomConfig(geometry=SMALL, subjects=2, seed=9), 1)[1]
    b = generate_subject(PhantomConfig(geometry=SMALL, subjects=50, seed=9), 1)[1]
    assert np.array_equal(a.image, b.image) and np.array_equal(a.seg, b.seg)


def test_v1_subjects_carry_no_version_2_draws():
    s = sample_subject(numpy_rng(0, 0), PhantomConfig(version=1), 0)
    assert s.imaging is None and s.cycle_phase == "" and "phase_encode" not in subject_row(s)


@pytest.mark.slow
def test_v2_keeps_the_t2_contrast():
    """Through texture, coil shading, low resolution and ghosts: cavity > wall > myoma, urine > fat > muscle."""
    cfg = PhantomConfig(geometry=SMALL, seed=21, anatomy={"p_myoma": 1.0})
    for k in range(4):
        _, r = generate_subject(cfg, k)
        med = {v: float(np.median(r.image[r.seg == v])) for v in (1, 2, 3)}
        assert med[2] > 1.2 * med[1] and med[3] < 0.8 * med[1], k

        def tissue(t: Tissue, r=r) -> float:
            return float(np.median(r.image[r.tissue == int(t)]))

        assert tissue(Tissue.URINE) > tissue(Tissue.FAT) > tissue(Tissue.MUSCLE), k


# --- artefacts on a synthetic body: a bright block in air ---------------------------------------------------------

def _block() -> tuple[np.ndarray, np.ndarray]:
    signal = np.zeros((64, 64, 3), np.float32)
    signal[16:48, 8:40] = 100.0
    return signal, signal > 0


def _imaging(**kw) -> Imaging:
    base = dict(texture_gain=1.0, fat_septa=0.0, snr_factor=1.0, resolution=1.0, slice_mix=0.0, phase_encode="AP",
                ghost_amplitude_mm=0.0, ghost_period=8.0, ghost_phase=0.0, ghost_depth_mm=20.0, wrap_mm=0.0,
                wrap_gain=0.5, coil_shading=0.0, coil_depth_mm=40.0)
    return Imaging(**{**base, **kw})


def test_no_artefact_reproduces_the_input():
    signal, body = _block()
    out = acquire(signal, body, _imaging(), (2.0, 2.0))
    assert np.allclose(np.abs(out), signal, atol=1e-3)


@pytest.mark.parametrize("pe", ["AP", "SI"])
def test_breathing_ghosts_fall_outside_the_body_along_the_phase_encode_axis(pe):
    """The block (rows 16-48, columns 8-40) moves anterior-posterior; ghosts repeat it along the phase-encode axis."""
    signal, body = _block()
    out = np.abs(acquire(signal, body, _imaging(ghost_amplitude_mm=4.0, phase_encode=pe), (2.0, 2.0)))
    along_ap, along_si = out[20:44, 46:62].mean(), out[52:62, 12:36].mean()  # air, clear of the edges
    in_line, across = (along_ap, along_si) if pe == "AP" else (along_si, along_ap)
    assert in_line > 1.0  # ghost signal in the air
    assert in_line > 5 * across  # ... along the phase-encode direction only
    still = np.abs(acquire(signal, body, _imaging(phase_encode=pe), (2.0, 2.0)))
    assert still[20:44, 46:62].max() < 1e-3 and still[52:62, 12:36].max() < 1e-3


def test_lower_resolution_blurs_edges_and_rings():
    signal, body = _block()
    out = np.abs(acquire(signal, body, _imaging(resolution=0.4), (2.0, 2.0)))
    assert 5 < out[30, 40, 1] < 95  # the edge is smeared
    assert out[30, 44:60, 1].max() > 1.0  # Gibbs ringing outside


def test_wrap_folds_a_body_that_reaches_the_edge():
    signal = np.zeros((64, 64, 3), np.float32)
    signal[16:48, 50:] = 100.0  # body reaching the posterior edge
    out = np.abs(acquire(signal, signal > 0, _imaging(wrap_mm=10.0, wrap_gain=0.5), (2.0, 2.0)))
    assert np.allclose(out[16:48, :5], 50.0, atol=1e-2) and np.allclose(out[:16, :5], 0, atol=1e-2)
    inside = np.zeros_like(signal)
    inside[16:48, 20:40] = 100.0  # a body clear of the edges does not wrap
    assert np.allclose(np.abs(acquire(inside, inside > 0, _imaging(wrap_mm=10.0), (2.0, 2.0))), inside, atol=1e-3)


def test_coil_shading_brightens_near_the_skin():
    _, body = _block()
    prof = coil_shading(body, _imaging(coil_shading=0.5), 2.0)
    assert prof[30, 8, 0] > prof[30, 24, 0] < prof[30, 39, 0]
    assert prof[body].mean() == pytest.approx(1.0, abs=1e-5)


def test_slice_mix_takes_signal_from_neighbours():
    signal = np.zeros((4, 4, 5), np.float32)
    signal[:, :, 2] = 1.0
    out = mix_slices(signal, 0.2)
    assert np.allclose(out[0, 0], [0, 0.2, 0.6, 0.2, 0])


def test_priors_validation_errors():
    with pytest.raises(ValidationError, match="unknown phases"):
        PhantomConfig(priors={"cycle": {"phase": {"values": ["luteal"], "p": [1.0]}}})
    with pytest.raises(ValidationError, match="difficulty"):
        PhantomConfig(anatomy={"difficulty": 1.5})
    with pytest.raises(ValidationError, match="version"):
        PhantomConfig(version=3)
    with pytest.raises(ValidationError, match="lower bound"):
        PhantomConfig(priors={"appearance": {"resolution": {"lo": 1.0, "hi": 0.5}}})
    with pytest.raises(ValidationError, match="p_wrap"):
        PhantomConfig(priors={"appearance": {"p_wrap": 2.0}})
