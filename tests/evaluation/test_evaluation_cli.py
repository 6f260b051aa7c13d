import json
import re

import numpy as np
import pytest
import torch

from conftest import make_synthetic_set
from uterosynth.cli import main
from uterosynth.data.manifest import PreparedDataset


def _extractor(path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                              torch.nn.Flatten())
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 1, 16, 16)), str(path))
    return path


def _synthetic_from(prepared, out, split="train", noise=0.05, dims=2):
    ds = PreparedDataset.load(prepared, split)
    arr = ds.stack() + noise * np.random.default_rng(0).standard_normal(ds.stack().shape)
    conds = [{"orientation": r["orientation"]} for r in ds.rows]
    return make_synthetic_set(out, np.clip(arr, 0, 1), conds, dims=dims)


FAST = ["--set", "bootstrap.n=10", "--set", "kid.subsets=2", "--set", "kid.bootstrap_subsets=1", "--set",
        "msssim.pairs=20", "--set", "frd.enabled=false"]


@pytest.mark.slow
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_evaluate_writes_metrics_and_self_contained_report(tmp_path, prepared_2d, prepared_3d, spatial_dims, capsys):
    prepared = prepared_2d if spatial_dims == 2 else prepared_3d
    syn = _synthetic_from(prepared, tmp_path / "syn", dims=spatial_dims)
    base = _synthetic_from(prepared, tmp_path / "base", noise=0.3, dims=spatial_dims)
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--real", str(prepared), "--synthetic", str(syn), "--baseline", f"noisy={base}",
              "--extractor", str(_extractor(tmp_path / "ex.pt")), "--extractor-kind", "torchscript",
              "--out", str(tmp_path / "out"), "--json", *FAST])
    assert info.value.code in (0, None)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # the 3D fixture's test split holds one volume: too few for an equal-N floor, which is skipped
    assert set(metrics["sets"]) == {"synthetic", "noisy"} | ({"real_vs_real"} if spatial_dims == 2 else set())
    fid_key = "fid" if spatial_dims == 2 else "fid_2.5d"
    n_test = len(PreparedDataset.load(prepared, "test" if spatial_dims == 2 else "train"))
    fid = metrics["sets"]["synthetic"]["metrics"][fid_key]
    # every set at one N: the smallest set (here the test-split noise floor)
    assert metrics["equal_n"]["n"] == n_test
    for name, s in metrics["sets"].items():
        for key in ("kid", fid_key, f"{fid_key}_inf", "precision", "coverage"):
            m = s["metrics"][key]
            assert m["n"] == {"real": n_test, "synthetic": n_test}, (name, key)
            # a one-subject floor has no subject-level interval (NaN), never a wrong one
            if None not in (m["ci_low"], m["value"], m["ci_high"]):
                assert m["ci_low"] <= m["value"] <= m["ci_high"], (name, key)
    assert list(metrics["sets"]["synthetic"]["metrics"])[0] == "kid"
    assert fid["warnings"]
    assert summary[f"synthetic.{fid_key}"] == pytest.approx(fid["value"])
    assert metrics["extractor"]["sha256"] and metrics["provenance"]["uterosynth_version"]
    assert fid["measured_with"]["sha256"] == metrics["extractor"]["sha256"]
    assert metrics["sets"]["noisy"]["metrics"][fid_key]["value"] > fid["value"]
    if spatial_dims == 3:
        assert "slice_consistency_ssim" in metrics["sets"]["synthetic"]["metrics"]
        assert metrics["extractor"]["2.5d"]["planes"] == 3
    html = (tmp_path / "out" / "report.html").read_text()
    assert "data:image/png;base64," in html and "real_vs_real" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


@pytest.mark.slow
def test_train_encoder_then_evaluate_with_it(tmp_path, prepared_2d, capsys):
    enc = tmp_path / "enc"
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "train-encoder", "--data", str(prepared_2d), "--out", str(enc), "--json",
              "--set", "image_size=16", "--set", "epochs=1", "--set", "batch_size=4", "--set", "channels=[4,4,8,8]"])
    assert info.value.code in (0, None)
    encoder = json.loads((enc / "encoder.json").read_text())
    assert encoder["feature_dim"] == 8 and encoder["data"]["split"] == ["train"] and len(encoder["sha256"]) == 64
    syn = _synthetic_from(prepared_2d, tmp_path / "syn")
    args = ["evaluate", "--real", f"{prepared_2d}:train", "--synthetic", str(syn), "--extractor", str(enc),
            "--out", str(tmp_path / "out"), *FAST]
    capsys.readouterr()
    # the encoder saw the reference's subjects: refused in one line naming it and the count
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    n_train = len(PreparedDataset.load(prepared_2d, "train").subjects())
    assert info.value.code == 2 and len(err) == 1 and str(enc / "encoder.pt") in err[0]
    assert f"{n_train} of {n_train} evaluated subjects" in err[0] and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as info:
        main([*args, "--allow-overlap"])
    assert info.value.code in (0, None)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["extractor"]["sha256"] == encoder["sha256"] and metrics["extractor"]["feature_dim"] == 8
    assert metrics["subject_overlap"]["allow_overlap"] and metrics["subject_overlap"]["total"] == n_train


def test_bad_baseline_spec_exits_2(tmp_path, prepared_2d):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--real", str(prepared_2d), "--baseline", "nonsense", "--out", str(tmp_path / "o")])
    assert info.value.code == 2


def test_missing_real_exits_2(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--out", str(tmp_path / "o")])
    assert info.value.code == 2


def test_missing_extractor_path_exits_2(tmp_path, prepared_2d, capsys):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--real", str(prepared_2d), "--out", str(tmp_path / "o")])
    assert info.value.code == 2 and "extractor.path" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_existing_output_exits_2(tmp_path, prepared_2d, capsys):
    (tmp_path / "o").mkdir()
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--real", str(prepared_2d), "--out", str(tmp_path / "o")])
    assert info.value.code == 2 and "already exists" in capsys.readouterr().err
