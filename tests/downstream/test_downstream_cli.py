import json

import pytest
from downstream_fixtures import bar_arrays, make_bar_dataset

from conftest import make_synthetic_set
from uterosynth.cli import main


def _run(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_cli_unknown_task_exit_code_2(tmp_path, capsys, prepared_2d):
    code, _, err = _run(["downstream", "--real", str(prepared_2d), "--task", "colour", "--out", str(tmp_path / "o")],
                        capsys)
    assert code == 2 and "task 'colour' is not an attribute" in err
    assert not (tmp_path / "o").exists()


def test_cli_missing_real_exit_code_2(tmp_path, capsys):
    code, _, err = _run(["downstream", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "--real PREPARED and --out DIR are required" in err


def test_cli_bad_config_key_exit_code_2(tmp_path, capsys, prepared_2d):
    code, _, err = _run(["downstream", "--real", str(prepared_2d), "--out", str(tmp_path / "o"), "--set", "budgets=[0]"],
                        capsys)
    assert code == 2 and "budgets" in err


def test_cli_unlabelled_synthetic_exit_code_2(tmp_path, capsys):
    real = make_bar_dataset(tmp_path / "real", shape=(16, 16), items_per_subject=1)
    arrays, _ = bar_arrays(4, (16, 16))
    syn = make_synthetic_set(tmp_path / "s", arrays)
    code, _, err = _run(["downstream", "--real", str(real), "--synthetic", f"diffusion={syn}",
                         "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "has no 'orientation' in its condition" in err


def test_cli_train_classifier_unknown_task_exit_code_2(tmp_path, capsys, prepared_2d):
    code, _, err = _run(["downstream", "train-classifier", "--data", str(prepared_2d), "--task", "colour",
                         "--out", str(tmp_path / "j")], capsys)
    assert code == 2 and "colour" in err


@pytest.mark.slow
def test_cli_train_classifier_json(tmp_path, capsys):
    real = make_bar_dataset(tmp_path / "real", shape=(16, 16), items_per_subject=1)
    code, out, _ = _run(["downstream", "train-classifier", "--data", str(real), "--out", str(tmp_path / "j"), "--json",
                         "--set", "classifier.image_size=16", "--set", "classifier.widen_factor=0.0625",
                         "--set", "train.max_epochs=1", "--set", "train.min_samples_per_epoch=16"], capsys)
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["classes"] == ["AVAF", "AVRF", "RVAF", "RVRF"]
    assert (tmp_path / "j" / "classifier.pt").is_file()
    assert json.loads((tmp_path / "j" / "classifier.json").read_text())["sha256"] == summary["sha256"]
    # the same folder again without --overwrite is refused
    code, _, err = _run(["downstream", "train-classifier", "--data", str(real), "--out", str(tmp_path / "j")], capsys)
    assert code == 2 and "already exists" in err


@pytest.mark.slow
def test_cli_quick_grid_json(tmp_path, capsys, monkeypatch):
    real = make_bar_dataset(tmp_path / "real", shape=(16, 16), items_per_subject=1)
    arrays, cond = bar_arrays(8, (16, 16))
    syn = make_synthetic_set(tmp_path / "samples", arrays, cond)
    code, out, _ = _run(["downstream", "--real", str(real), "--synthetic", str(syn), "--quick", "--json",
                         "--out", str(tmp_path / "o"), "--set", "n_seeds=1", "--set", "classifier.image_size=16",
                         "--set", "train.max_epochs=1", "--set", "train.min_samples_per_epoch=16",
                         "--set", "protocols.augment=false"], capsys)
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["runs"] == 2 * 2 + 1  # real and real+samples@1:1 at 2 budgets, samples_only once
    assert set(summary["balanced_accuracy@0.25"]) == {"real", "real+samples@1:1", "samples_only"}
    assert (tmp_path / "o" / "results.json").is_file()
