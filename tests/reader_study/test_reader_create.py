import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from rs_support import build_study, make_prepared_dataset, make_synthetic_set, run_cli

from uterosynth.core.errors import ConfigError, DataError
from uterosynth.reader_study.config import StudyConfig
from uterosynth.reader_study.create import allocate, create_study
from uterosynth.reader_study.render import display_shape, png_chunks, render_slices, window
from uterosynth.reader_study.security import hash_token
from uterosynth.reader_study.study import StudyFolder


def test_window_maps_percentiles_to_full_range():
    img = window(np.arange(100, dtype=np.float32).reshape(10, 10), 1.0, 99.0)
    assert img.dtype == np.uint8 and img.min() == 0 and img.max() == 255
    assert window(np.ones((4, 4), np.float32), 0.5, 99.5).max() == 0  # flat image: no division by zero


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_render_is_identical_in_format_for_any_input(spatial_dims):
    rng = np.random.default_rng(0)
    shape_a = (20, 16) + ((5,) if spatial_dims == 3 else ())
    shape_b = (40, 32) + ((5,) if spatial_dims == 3 else ())
    target = display_shape(shape_a, 48)
    a = render_slices(rng.random(shape_a, dtype=np.float32), target)
    b = render_slices(100 + 50 * rng.random(shape_b, dtype=np.float32), target)  # other size and range
    assert len(a) == len(b) == (5 if spatial_dims == 3 else 1)
    import io

    from PIL import Image

    for pa, pb in zip(a, b, strict=True):
        assert png_chunks(pa) == png_chunks(pb) == ["IHDR", "IDAT", "IEND"]  # no text/time/pHYs chunks
        ia, ib = Image.open(io.BytesIO(pa)), Image.open(io.BytesIO(pb))
        assert ia.size == ib.size == (target[1], target[0]) and ia.mode == ib.mode == "L"
        assert not ia.info and not ib.info


def test_allocate_balances_and_respects_capacity():
    rng = np.random.default_rng(0)
    assert allocate({"a": 10, "b": 10, "c": 10}, 9, rng) == {"a": 3, "b": 3, "c": 3}
    q = allocate({"a": 1, "b": 10}, 6, rng)
    assert q == {"a": 1, "b": 5}
    with pytest.raises(DataError, match="per_source 7"):
        allocate({"a": 3, "b": 3}, 7, rng)


def test_study_is_balanced_blinded_and_seeded(tmp_path):
    s = build_study(tmp_path, per_source=4, raters=["alice", "bob", "carol"])
    study = StudyFolder.load(s.root)
    sources = Counter(k.source for k in study.key.values())
    assert sources == {"real": 4, "synthetic": 4}
    # per class: each class has as many real as synthetic items
    per_class = Counter((k.class_label, k.source) for k in study.key.values())
    for label in {k.class_label for k in study.key.values()}:
        assert per_class[(label, "real")] == per_class[(label, "synthetic")]
    assert sum(s.made.classes.values()) == 4 and len(s.made.classes) == 4
    # every rater rates every item, each in their own order
    orders = [[i for _, i in r.assignments] for r in study.raters]
    assert all(sorted(o) == sorted(study.key) for o in orders)
    assert len({tuple(o) for o in orders}) == 3
    # opaque names: random hex ids, nothing else in the image folder
    names = [p.name for p in (s.root / "images").iterdir()]
    assert sorted(names) == sorted(study.key)
    assert all(len(n) == 32 and int(n, 16) >= 0 for n in names)
    # tokens only as hashes
    text = (s.root / "study.json").read_text()
    for token in [*s.tokens.values(), s.admin]:
        assert token not in text and hash_token(token) in text
    # the same seed gives the same selection (orders are secret, see test_reader_blinding.py)
    s2 = build_study(tmp_path / "again", per_source=4, raters=["alice", "bob", "carol"])
    study2 = StudyFolder.load(s2.root)
    assert sorted(k.origin for k in study.key.values()) == sorted(k.origin for k in study2.key.values())


def test_real_and_synthetic_pngs_are_indistinguishable_by_format(tmp_path):
    s = build_study(tmp_path, per_source=4)
    study = StudyFolder.load(s.root)
    sizes, chunks = set(), set()
    from PIL import Image

    for item_id in study.key:
        data = study.image_path(item_id, 0).read_bytes()
        chunks.add(tuple(png_chunks(data)))
        sizes.add(Image.open(study.image_path(item_id, 0)).size)
    assert chunks == {("IHDR", "IDAT", "IEND")} and sizes == {(32, 32)}


def test_3d_study_has_a_slice_stack(tmp_path):
    s = build_study(tmp_path, dims=3, per_source=2)
    study = StudyFolder.load(s.root)
    assert study.dims == 3 and study.n_slices == 4
    for item_id in study.key:
        assert len(list((s.root / "images" / item_id).glob("*.png"))) == 4


def test_no_class_balance_when_switched_off(tmp_path):
    s = build_study(tmp_path, per_source=3, class_by=[])
    assert s.made.classes == {"": 3}


def test_dimension_mismatch_is_a_data_error(tmp_path):
    real = make_prepared_dataset(tmp_path / "r", dims=2, shape=(16, 16))
    syn = make_synthetic_set(tmp_path / "s", dims=3, shape=(8, 8, 4), n=4)
    with pytest.raises(DataError, match="3D"):
        create_study(real, syn, tmp_path / "out", StudyConfig(per_source=2, raters=["a"]))
    assert not (tmp_path / "out").exists()


def test_too_few_items_is_a_data_error(tmp_path):
    real = make_prepared_dataset(tmp_path / "r", shape=(16, 16))
    syn = make_synthetic_set(tmp_path / "s", shape=(16, 16), n=4)
    with pytest.raises(DataError, match="lower per_source"):
        create_study(real, syn, tmp_path / "out", StudyConfig(per_source=50, raters=["a"]))


def test_no_shared_class_is_a_data_error(tmp_path):
    real = make_prepared_dataset(tmp_path / "r", shape=(16, 16))
    syn = make_synthetic_set(tmp_path / "s", shape=(16, 16), n=4,
                             conditions=[{"orientation": "XXXX", "field_strength": "9T"}])
    with pytest.raises(DataError, match="no class"):
        create_study(real, syn, tmp_path / "out", StudyConfig(per_source=2, raters=["a"]))


def test_unknown_class_attribute_is_a_config_error(tmp_path):
    real = make_prepared_dataset(tmp_path / "r", shape=(16, 16))
    syn = make_synthetic_set(tmp_path / "s", shape=(16, 16), n=4)
    with pytest.raises(ConfigError, match="class_by: 'pathology'"):
        create_study(real, syn, tmp_path / "out", StudyConfig(per_source=2, raters=["a"], class_by=["pathology"]))


@pytest.mark.parametrize("raters, match", [([], "at least one"), (["a", "a"], "unique"), (["<script>"], "not allowed"),
                                           (["alice\n"], "not allowed")])
def test_bad_rater_names_are_rejected(raters, match):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=match):
        StudyConfig(per_source=2, raters=raters)


def test_study_folder_rejects_an_id_with_a_trailing_newline(tmp_path):
    s = build_study(tmp_path, per_source=2, raters=["a"])
    study = StudyFolder.load(s.root)
    with pytest.raises(DataError, match="no image"):
        study.image_path(next(iter(study.key)) + "\n", 0)


def test_bad_window_is_rejected():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="below high_pct"):
        StudyConfig(raters=["a"], low_pct=99, high_pct=1)


def test_study_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not a reader study"):
        StudyFolder.load(tmp_path)
    (tmp_path / "study.json").write_text(json.dumps({"study_id": "x"}))
    (tmp_path / "key.json").write_text(json.dumps({"items": {}}))
    with pytest.raises(DataError, match="malformed"):
        StudyFolder.load(tmp_path)


def test_cli_create_prints_links_and_admin_token(tmp_path, capsys):
    real = make_prepared_dataset(tmp_path / "r", shape=(16, 16), subjects=8)
    syn = make_synthetic_set(tmp_path / "s", shape=(16, 16), n=8)
    assert run_cli(["reader-study", "create", "--real", f"{real}:train", "--synthetic", str(syn), "--per-source", "2",
          "--raters", "alice, bob", "--out", str(tmp_path / "study"), "--size", "16", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["links"]) == {"alice", "bob"}
    assert all("/rate#t=" in link for link in summary["links"].values()) and len(summary["admin_token"]) >= 43
    study = StudyFolder.load(Path(summary["study"]))
    assert study.admin_token_hash == hash_token(summary["admin_token"])
    # only the train split (subjects S000-S005 of 8) was drawn from
    real_origins = [k.origin for k in study.key.values() if k.source == "real"]
    assert real_origins and all(o[6:10] in {f"S00{i}" for i in range(6)} for o in real_origins)


def test_cli_create_bad_input_exits_2(tmp_path, capsys):
    code = run_cli(["reader-study", "create", "--real", str(tmp_path / "missing"), "--synthetic", str(tmp_path),
                    "--per-source", "2", "--raters", "a", "--out", str(tmp_path / "o")])
    assert code == 2 and "not found" in capsys.readouterr().err


def test_raters_are_required():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least one rater"):
        StudyConfig(per_source=2)


def test_preset_loads_with_overrides():
    from uterosynth.core.config import load_config

    preset = Path(__file__).resolve().parents[2] / "configs" / "reader_study.yaml"
    cfg = load_config(StudyConfig, preset, overrides={"raters": ["alice", "bob"], "per_source": 3})
    assert cfg.per_source == 3 and cfg.raters == ["alice", "bob"] and cfg.class_by is None
    with pytest.raises(ConfigError, match="raters"):
        load_config(StudyConfig, preset)


def test_repeated_rater_names_are_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="rater names must be unique; repeated: a, b"):
        StudyConfig(per_source=2, raters=["b", "a", "c", "a", "b"])
