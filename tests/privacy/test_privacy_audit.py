"""The calibrated audit: planted copies, artifacts, CLI and errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_anatomy_dataset, make_anatomy_subject, make_synthetic_set
from uterosynth.cli import main
from uterosynth.core.errors import UserError
from uterosynth.data.image_set import ImageSet
from uterosynth.privacy.audit import run_audit
from uterosynth.privacy.config import AuditConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from results_audit import TRANSFORMS, evaluate, make_experiment  # noqa: E402


@pytest.mark.slow
def test_planted_copies_are_flagged_and_new_samples_are_not():
    train, hold, syn, is_copy, kinds = make_experiment(
        train_subjects=60, holdout_subjects=120, new_subjects=100, copies_per_kind=10, slices=4, shape=(64, 64), seed=3)
    # each measure's own rate: on these homogeneous ellipse images one rule for the decision (control any) misses
    # a few 2-4 px shifts, which only NCC sees (docs/RESULTS.md, "Privacy audit on the corrected pipeline")
    result = run_audit(train, syn, hold, config=AuditConfig(control="each"))
    out = evaluate(result, is_copy, kinds)
    assert out["copies_flagged"] >= 0.99, out["per_kind"]
    assert all(out["per_kind"][k] == 1.0 for k in TRANSFORMS)
    assert out["new_flagged"] <= 0.05, out
    assert result.false_flag_rate["available"] and result.false_flag_rate["any"] <= 0.06


def _sets(spatial_dims: int, tmp_path: Path, *, copies: int = 2):
    if spatial_dims == 2:
        prep = make_anatomy_dataset(tmp_path / "prep", subjects={"train": 24, "val": 2, "test": 10}, slices_per_subject=3,
                                    shape=(32, 32))  # 102 calibration items: enough for the 0.99 quantile
        new = np.concatenate([make_anatomy_subject(np.random.default_rng([5, i]), (32, 32), 1) for i in range(4)])
    else:
        prep = make_anatomy_dataset(tmp_path / "prep", subjects={"train": 8, "val": 1, "test": 6}, slices_per_subject=8,
                                    shape=(24, 24), dims=3)
        new = np.stack([np.moveaxis(make_anatomy_subject(np.random.default_rng([5, i]), (24, 24), 8), 0, -1)
                        for i in range(3)])
    import nibabel as nib

    cop = [np.asarray(nib.load(str(prep / "items" / f"S{s:04d}_000.nii.gz")).dataobj, dtype=np.float32) for s in range(copies)]
    cop = np.stack([c[:, :, 0] if spatial_dims == 2 else c for c in cop])
    syn = make_synthetic_set(tmp_path / "syn", np.concatenate([new, cop]), dims=spatial_dims)
    return prep, syn, len(new)


@pytest.mark.slow
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_audit_cli_writes_calibrated_artifacts(spatial_dims, tmp_path, capsys):
    prep, syn, n_new = _sets(spatial_dims, tmp_path)
    quantile = 0.99 if spatial_dims == 2 else 0.9  # 14 volumes support 0.9, not 0.99
    with pytest.raises(SystemExit) as info:
        main(["audit", "--train", str(prep), "--synthetic", str(syn), "--out", str(tmp_path / "audit"), "--json",
              "--quantile", str(quantile)])
    assert info.value.code in (0, None)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    doc = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert doc["modes"] == (["image"] if spatial_dims == 2 else ["volume", "slice"])
    assert summary["flagged_indices"] == doc["summary"]["flagged_indices"]
    assert set(doc["summary"]["flagged_indices"]) >= {n_new, n_new + 1}  # the two exact copies
    calib = doc["calibration"]
    assert calib["quantile"] == quantile and calib["holdout_items"] > 0 and calib["false_flag_rate"]["available"]
    train_items = {2: 24 * 3, 3: 8}[spatial_dims]
    assert calib["sources"] == {"held-out": calib["holdout_items"], "training, against the other subjects": train_items}
    assert calib["items"] == len(calib["item_sources"]) == calib["holdout_items"] + train_items
    for mode in doc["modes"]:
        sims = np.sort(np.array(calib["similarities"][mode]["ncc"], dtype=float))
        rank = int(np.ceil((sims.size + 1) * quantile))
        assert calib["thresholds"][mode]["ncc"] == pytest.approx(sims[rank - 1], abs=1e-5)
        assert calib["conformal"][mode]["ncc"]["bound"] == pytest.approx(1 - rank / (sims.size + 1))
    assert doc["summary"]["training_subjects_copied"] >= 2  # S0000 and S0001 were copied
    copy = doc["samples"][n_new]
    first = copy["measures"][doc["modes"][0]]["ncc"]
    assert first["nearest_item"] == "S0000_000" and first["nearest_subject"] == "S0000" and first["similarity"] > 0.999
    assert copy["flagged"] and copy["flags"]
    if spatial_dims == 3:
        assert "nearest_slice" in copy["measures"]["slice"]["ssim"]
    page = (tmp_path / "audit" / "audit.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 and "held-out" in page and "http" not in page.replace("http-equiv", "")
    assert "source_path" not in json.dumps(doc)


@pytest.mark.slow
def test_audit_embedding_measure_with_torchscript_encoder(tmp_path):
    prep, syn, n_new = _sets(2, tmp_path)

    class Enc(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    enc = tmp_path / "enc.pt"
    torch.jit.save(torch.jit.script(Enc()), str(enc))
    with pytest.raises(SystemExit) as info:
        main(["audit", "--train", f"{prep}:train", "--synthetic", str(syn), "--out", str(tmp_path / "a"), "--encoder", str(enc),
              "--quantile", "0.95", "--json"])
    assert info.value.code in (0, None)
    doc = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert "embedding" in doc["calibration"]["thresholds"]["image"] and doc["calibration"]["quantile"] == 0.95
    assert doc["extractor"]["name"] == "enc" and len(doc["extractor"]["sha256"]) == 64
    assert doc["samples"][n_new]["measures"]["image"]["embedding"]["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_audit_refuses_same_split_for_train_and_holdout(tmp_path):
    prep, syn, _ = _sets(2, tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["audit", "--train", f"{prep}:test", "--synthetic", str(syn), "--out", str(tmp_path / "a")])
    assert info.value.code == 2


def test_audit_refuses_holdout_subjects_all_in_training():
    x = ImageSet(torch.rand(4, 1, 16, 16), ["a", "b", "c", "d"], ["S1", "S1", "S2", "S2"])
    with pytest.raises(UserError, match="held-out subject"):
        run_audit(x, x, x)


def test_audit_refuses_shape_mismatch():
    t = ImageSet(torch.rand(4, 1, 16, 16), list("abcd"), ["S1", "S1", "S2", "S2"])
    s = ImageSet(torch.rand(2, 1, 16, 12), ["0", "1"], ["", ""])
    with pytest.raises(UserError, match="shapes differ"):
        run_audit(t, s, ImageSet(torch.rand(2, 1, 16, 16), ["h", "i"], ["S3", "S4"]))


def test_audit_refuses_empty_set():
    t = ImageSet(torch.rand(4, 1, 16, 16), list("abcd"), ["S1", "S1", "S2", "S2"])
    with pytest.raises(UserError, match="empty"):
        run_audit(t, ImageSet(torch.empty(0, 1, 16, 16), [], []), t)


def test_audit_missing_encoder_file_exits_2(tmp_path):
    prep, syn, _ = _sets(2, tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["audit", "--train", str(prep), "--synthetic", str(syn), "--out", str(tmp_path / "a"),
              "--encoder", str(tmp_path / "missing.pt")])
    assert info.value.code == 2


def test_conformal_threshold_rank_bound_and_refusal():
    from uterosynth.privacy.audit import conformal_threshold, items_needed

    scores = np.arange(1.0, 100.0)  # 99 items
    assert conformal_threshold(scores, 0.99) == (99.0, 99, pytest.approx(0.01))
    assert conformal_threshold(scores, 0.9) == (90.0, 90, pytest.approx(0.1))
    assert conformal_threshold(scores[:98], 0.99)[0] == float("inf") and conformal_threshold(scores[:98], 0.99)[2] is None
    assert conformal_threshold(np.array([np.nan, *scores]), 0.99)[0] == 99.0  # non-finite scores are not items
    assert items_needed(0.99) == 99 and items_needed(0.95) == 19 and items_needed(0.9) == 9
    assert items_needed(0.99, measures=3) == 399  # control any: three items can share the top rank score
    assert items_needed(0.99, measures=1) == 199


def test_conformal_threshold_holds_its_false_flag_bound_at_small_n():
    """Exchangeable scores: a new item exceeds the threshold at most at the stated rate, for every n."""
    from uterosynth.privacy.audit import conformal_threshold

    rng = np.random.default_rng(0)
    for n in (19, 40, 120):
        draws = rng.normal(size=(4000, n + 1))
        thresholds = np.array([conformal_threshold(d[:n], 0.95)[0] for d in draws])
        bound = conformal_threshold(draws[0, :n], 0.95)[2]
        rate = float((draws[:, n] > thresholds).mean())
        assert rate <= bound + 3 * np.sqrt(bound * (1 - bound) / 4000)
        naive = np.array([np.quantile(d[:n], 0.95) for d in draws])
        assert (draws[:, n] > naive).mean() >= rate  # the interpolated quantile flags at least as often


def test_audit_refuses_a_calibration_too_small_for_the_quantile():
    rng = torch.Generator().manual_seed(0)
    train = ImageSet(torch.rand(20, 1, 16, 16, generator=rng), [f"t{i}" for i in range(20)], [f"T{i // 2}" for i in range(20)])
    hold = ImageSet(torch.rand(10, 1, 16, 16, generator=rng), [f"h{i}" for i in range(10)], [f"H{i // 2}" for i in range(10)])
    with pytest.raises(UserError, match=r"30 calibration items \(15 subjects\).*at least 99 items, about 50 subjects"):
        run_audit(train, train, hold)
    result = run_audit(train, train, hold, config=AuditConfig(quantile=0.95))
    assert result.calibration["sources"] == {"held-out": 10, "training, against the other subjects": 20}


def test_control_auto_takes_one_rule_for_the_decision_only_where_the_calibration_allows_it():
    rng = torch.Generator().manual_seed(0)
    train = ImageSet(torch.rand(20, 1, 16, 16, generator=rng), [f"t{i}" for i in range(20)], [f"T{i // 2}" for i in range(20)])
    hold = ImageSet(torch.rand(10, 1, 16, 16, generator=rng), [f"h{i}" for i in range(10)], [f"H{i // 2}" for i in range(10)])
    syn = ImageSet(torch.rand(8, 1, 16, 16, generator=rng), [f"s{i}" for i in range(8)], [""] * 8)
    for quantile, chosen in ((0.8, "any"), (0.95, "each")):  # 30 items, three measures: any needs 19 / 79
        auto = run_audit(train, syn, hold, config=AuditConfig(quantile=quantile))
        fixed = run_audit(train, syn, hold, config=AuditConfig(quantile=quantile, control=chosen))
        assert auto.config.control == chosen and auto.false_flag_rate["control"] == chosen
        assert auto.modes[0].thresholds == fixed.modes[0].thresholds and np.array_equal(auto.flagged, fixed.flagged)
        assert auto.modes[0].notes["control"].startswith(f"auto: {chosen}, 30 calibration items")
    any_rule = run_audit(train, syn, hold, config=AuditConfig(quantile=0.8, control="any")).modes[0].thresholds
    each_rule = run_audit(train, syn, hold, config=AuditConfig(quantile=0.8, control="each")).modes[0].thresholds
    assert all(any_rule[k] >= each_rule[k] for k in each_rule) and any_rule != each_rule


def test_blurred_controls_join_the_calibration_and_report_their_own_rate():
    rng = torch.Generator().manual_seed(1)
    train = ImageSet(torch.rand(40, 1, 16, 16, generator=rng), [f"t{i}" for i in range(40)], [f"T{i // 2}" for i in range(40)])
    hold = ImageSet(torch.rand(20, 1, 16, 16, generator=rng), [f"h{i}" for i in range(20)], [f"H{i // 2}" for i in range(20)])
    result = run_audit(train, train, hold, config=AuditConfig(quantile=0.95, calibration_blur=[1.0, 2.0]))
    train_src = "training, against the other subjects"
    assert result.calibration["sources"] == {
        "held-out": 20, train_src: 40, "held-out, blurred sigma 1 px": 20, f"{train_src}, blurred sigma 1 px": 40,
        "held-out, blurred sigma 2 px": 20, f"{train_src}, blurred sigma 2 px": 40}
    ffr = result.false_flag_rate
    assert set(ffr["per_source"]) == set(result.calibration["sources"]) and ffr["subjects"] == 30
    assert result.flagged.all()  # the training items themselves are exact copies
    with pytest.raises(ValueError, match="positive"):
        AuditConfig(calibration_blur=[0.0])


def test_audit_without_its_sets_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["audit", "--synthetic", str(tmp_path), "--out", str(tmp_path / "a")])
    assert info.value.code == 2 and "--train, --synthetic and --out are required" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_harder_planted_copies_keep_the_shape_and_change_the_image():
    from results_audit import HARDER_TRANSFORMS, plant

    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1, (2, 32, 32)).astype(np.float32)
    for kind in HARDER_TRANSFORMS:
        out = plant(a, kind, rng, b)
        assert out.shape == a.shape and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
        assert not np.array_equal(out, a)
    assert np.allclose(plant(a, "mix", rng, b), 0.5 * (a + b))
    with pytest.raises(ValueError, match="second image"):
        plant(a, "mix", rng)


def test_embedding_only_audit_needs_no_pixel_measure_and_ssim_alone_is_refused():
    train, hold, syn, _, _ = make_experiment(train_subjects=30, holdout_subjects=80, new_subjects=4, copies_per_kind=1,
                                             slices=2, shape=(32, 32), seed=1)

    def pool(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)

    result = run_audit(train, syn, hold, config=AuditConfig(measures=["embedding"]), extractor=pool)
    assert list(result.modes[0].thresholds) == ["embedding"]
    assert "faiss flat" in result.modes[0].notes["embedding index, synthetic items"]
    with pytest.raises(UserError, match="need NCC, zoom or an encoder"):
        run_audit(train, syn, hold, config=AuditConfig(measures=["ssim"]))


def test_zoom_measure_flags_enlarged_crops_that_shifts_miss_and_records_where():
    from results_audit import plant

    from uterosynth.privacy.report import audit_document

    train, hold, _, _, _ = make_experiment(train_subjects=40, holdout_subjects=40, new_subjects=1, copies_per_kind=1,
                                           slices=3, shape=(48, 48), seed=2)
    rng = np.random.default_rng(0)
    x = train.images[:, 0].numpy()
    picks = rng.choice(len(x), 12, replace=False)
    crops = np.stack([plant(x[j], "crop", rng) for j in picks])
    syn = ImageSet(torch.from_numpy(crops)[:, None], [str(i) for i in range(12)], ["syn"] * 12)
    result = run_audit(train, syn, hold, config=AuditConfig(measures=["ncc", "zoom"], quantile=0.95))
    mode = result.modes[0]
    zoom_hits = mode.synthetic["zoom"].similarity > mode.thresholds["zoom"]
    ncc_hits = mode.synthetic["ncc"].similarity > mode.thresholds["ncc"]
    assert zoom_hits.mean() >= 0.9 and zoom_hits.sum() > ncc_hits.sum()
    found = [train.subjects[j] for j in mode.synthetic["zoom"].ref_index[zoom_hits]]
    assert found == [train.subjects[j] for j in picks[zoom_hits]]  # the cropped item's subject
    doc = audit_document(result, train, syn, hold, provenance={}, inputs={})
    where = doc["samples"][int(np.argmax(zoom_hits))]["measures"]["image"]["zoom"]["alignment"]
    assert 0.75 <= where["scale"] <= 0.95 and len(where["corner"]) == 2  # the crop's own side, 80-90 %
    assert "zoom" in doc["measures"] and doc["calibration"]["thresholds"]["image"]["zoom"] < 1
    with pytest.raises(ValueError, match="between 0 and 1"):
        AuditConfig(zoom_scales=[1.2])


def test_scores_are_taken_against_the_background_of_other_subjects():
    from uterosynth.privacy.audit import _excess_over_background
    from uterosynth.privacy.similarity import Neighbours

    groups = torch.tensor([0, 0, 1, 2, 3])  # items 0 and 1 belong to one subject
    values = torch.tensor([[0.9, 0.8, 0.5, 0.4, 0.3], [0.6, 0.5, -torch.inf, -torch.inf, -torch.inf]])
    indices = torch.tensor([[0, 1, 2, 3, 4], [2, 3, -1, -1, -1]])
    found = Neighbours(values, indices, torch.zeros_like(indices))
    # the nearest item's own subject (0.8) is not background: the 2nd best of other subjects is 0.4
    assert torch.allclose(_excess_over_background(found, groups, 2), torch.tensor([0.9 - 0.4, 0.6 - 0.5]))
    assert torch.allclose(_excess_over_background(found, groups, 10), torch.tensor([0.9 - 0.3, 0.6 - 0.5]))  # the last there is
    assert torch.equal(_excess_over_background(found, groups, 0), values[:, 0])
    only_own = Neighbours(torch.tensor([[1.0, 0.9, 0.7]]), torch.tensor([[0, 1, 1]]), torch.zeros(1, 3, dtype=torch.long))
    # no other subject in the list: the last neighbour bounds the background, so a copy keeps its lead
    assert torch.allclose(_excess_over_background(only_own, groups, 2), torch.tensor([1.0 - 0.7]))


def test_the_background_list_reaches_past_a_subject_of_many_slices():
    from uterosynth.privacy.audit import _wide_shortlist

    cfg = AuditConfig(shortlist=5, background=10)
    assert _wide_shortlist(cfg, torch.tensor([0] * 5 + [1] * 5)) == 25  # 5 items per subject: shortlist + 2 x 10
    assert _wide_shortlist(cfg, torch.tensor([0] * 40 + [1] * 3)) == 5 + 10 + 40
    assert _wide_shortlist(AuditConfig(shortlist=5, background=0), torch.tensor([0] * 40 + [1] * 3)) == 5  # raw score
    with pytest.raises(ValueError, match="zoom_size"):
        AuditConfig(zoom_size=40, ncc_size=32)


def test_background_keeps_copies_and_stops_flagging_smooth_items():
    from uterosynth.core.imageio import blur_in_plane

    train, hold, _, _, _ = make_experiment(train_subjects=40, holdout_subjects=40, new_subjects=1, copies_per_kind=1,
                                           slices=3, shape=(48, 48), seed=4)
    new, _, _, _, _ = make_experiment(train_subjects=40, holdout_subjects=1, new_subjects=1, copies_per_kind=1,
                                      slices=3, shape=(48, 48), seed=5)
    smooth = torch.from_numpy(blur_in_plane(new.images[:, 0].numpy(), 2.0))[:, None]
    copies = train.images[:30] + 0.02 * torch.randn(30, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    probes = ImageSet(torch.cat([smooth, copies]), [str(i) for i in range(len(smooth) + 30)], ["p"] * (len(smooth) + 30))
    flagged = {}
    for bg in (0, 10):
        cfg = AuditConfig(measures=["ncc", "ssim"], quantile=0.95, background=bg)
        res = run_audit(train, probes, hold, config=cfg).modes[0]
        flagged[bg] = res.synthetic["ssim"].similarity > res.thresholds["ssim"]
    assert flagged[10][len(smooth):].all() and flagged[0][len(smooth):].all()  # noised copies, either way
    assert flagged[10][: len(smooth)].mean() < flagged[0][: len(smooth)].mean()


def test_any_control_holds_the_decision_rate_each_holds_every_measure():
    from uterosynth.privacy.audit import calibrated_thresholds, conformal_threshold

    rates: dict[str, list[float]] = {"each": [], "any": []}
    for draw in range(30):  # the guarantee is over calibration draws: average the realised rates
        rng = np.random.default_rng(draw)
        calib = {k: rng.normal(size=999) for k in ("a", "b", "c")}
        fresh = {k: rng.normal(size=20_000) for k in calib}
        for control in rates:
            thr, rec = calibrated_thresholds(calib, 0.99, control)
            rates[control].append(float(np.mean(np.any([fresh[k] > thr[k] for k in calib], axis=0))))
        if draw == 0:
            each, _ = calibrated_thresholds(calib, 0.99, "each")
            anyc, rec_any = calibrated_thresholds(calib, 0.99, "any")
            assert each["a"] == conformal_threshold(calib["a"], 0.99)[0]
            assert all(anyc[k] > each[k] for k in calib) and rec_any["a"]["bound"] == pytest.approx(1 - 990 / 1000)
    assert 0.025 < np.mean(rates["each"]) < 0.035  # three measures: about 3 x 1 %
    assert 0.006 < np.mean(rates["any"]) <= 0.0105  # the decision: at most about 1 %


def test_training_calibration_is_capped_by_whole_subjects():
    from uterosynth.privacy.audit import _subject_sample

    subjects = [f"S{i // 5}" for i in range(100)]
    assert _subject_sample(subjects, 100, 0).tolist() == list(range(100))
    keep = _subject_sample(subjects, 33, 0).tolist()
    picked = {subjects[i] for i in keep}
    assert len(keep) == 30 and all(sum(s == p for s in subjects) == 5 for p in picked)
    assert sorted(keep) == sorted(i for i, s in enumerate(subjects) if s in picked)
    assert _subject_sample(subjects, 33, 1).tolist() != keep


def test_embedding_only_audit_of_volumes_with_a_2d_encoder_runs_in_slice_mode():
    rng = np.random.default_rng(0)
    vols = torch.from_numpy(rng.random((40, 1, 16, 16, 4)).astype(np.float32))
    train = ImageSet(vols[:30], [f"t{i}" for i in range(30)], [f"S{i}" for i in range(30)])
    hold = ImageSet(vols[30:], [f"h{i}" for i in range(10)], [f"H{i}" for i in range(10)])
    syn = ImageSet(vols[:2].clone(), ["x0", "x1"], [""] * 2)

    def pool2d(x: torch.Tensor) -> torch.Tensor:  # 2D only: fails on volumes
        if x.dim() != 4:
            raise ValueError("2D input only")
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    result = run_audit(train, syn, hold, config=AuditConfig(measures=["embedding"], quantile=0.9), extractor=pool2d)
    assert [m.mode for m in result.modes] == ["slice"] and list(result.modes[0].thresholds) == ["embedding"]
    assert result.flagged.all()  # the two copies
