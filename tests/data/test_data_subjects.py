"""Hashed training subjects in model artifacts, and the refusal to evaluate them."""

from __future__ import annotations

import pytest

from uterosynth.core.errors import DataError
from uterosynth.data.manifest import PreparedDataset
from uterosynth.data.subjects import (
    SALT,
    OverlapChecks,
    check_disjoint,
    check_models_disjoint,
    hash_subject,
    merge_subjects,
    training_subjects,
)
from uterosynth.data.synthetic import generator_subjects, source_subjects


def _data() -> PreparedDataset:
    rows = [{"subject": s, "split": sp} for s, sp in [("a", "train"), ("b", "train"), ("c", "val"), ("d", "test")]]
    return PreparedDataset(root="prep", rows=rows, info={"preprocess_hash": "h"})  # type: ignore[arg-type]


def test_training_subjects_are_hashed_with_salt():
    record = training_subjects(_data(), ("train",))
    assert record["hash"] == "sha256" and record["salt"] == SALT and record["splits"] == ["train"]
    assert record["ids"] == sorted([hash_subject("a"), hash_subject("b")]) and "a" not in record["ids"]
    assert record["dataset"] == "prep" and record["preprocess_hash"] == "h"


def test_check_disjoint_refuses_overlap_in_one_line():
    record = training_subjects(_data(), ("train", "val"))
    assert check_disjoint(record, ["d"], what="judge J vs prep:test") == 0
    with pytest.raises(DataError) as info:
        check_disjoint(record, ["a", "c", "d"], what="judge J vs prep:all")
    message = str(info.value)
    assert "\n" not in message and message.startswith("judge J vs prep:all: 2 of 3 evaluated subjects")
    assert "allow_overlap" in message and "--allow-overlap" not in message  # the config key, not a flag
    assert check_disjoint(record, ["a", "c", "d"], what="judge", allow_overlap=True) == 2


def test_artifacts_without_a_record_are_not_checked():
    assert check_disjoint(None, ["a"], what="old judge") == 0


def test_check_models_disjoint_compares_hashes():
    judge = training_subjects(_data(), ("train", "val"))  # a, b, c
    generator = training_subjects(_data(), ("train",))  # a, b
    held_out = training_subjects(_data(), ("test",))  # d
    assert check_models_disjoint(judge, held_out, what="judge J vs generator G") == 0
    with pytest.raises(DataError) as info:
        check_models_disjoint(judge, generator, what="judge J vs generator G")
    message = str(info.value)
    assert "\n" not in message and message.startswith("judge J vs generator G: 2 of its 2 subjects")
    assert "allow_overlap" in message and "--allow-overlap" not in message
    assert check_models_disjoint(judge, generator, what="judge", allow_overlap=True) == 2


def test_models_without_records_or_with_other_salts_are_not_compared():
    record = training_subjects(_data(), ("train",))
    assert check_models_disjoint(None, record, what="old judge") == 0
    assert check_models_disjoint(record, None, what="old generator") == 0
    other = {**record, "salt": "another-salt"}  # the same subjects, hashed otherwise: nothing to compare
    assert check_models_disjoint(record, other, what="judge") == 0


def test_merge_subjects_of_a_model_made_of_parts():
    ae, ldm = training_subjects(_data(), ("train", "val")), training_subjects(_data(), ("test",))
    merged = merge_subjects(diffusion=ldm, autoencoder=ae)
    assert merged["salt"] == SALT and merged["ids"] == sorted(ae["ids"] + ldm["ids"])
    assert [p["of"] for p in merged["parts"]] == ["diffusion", "autoencoder"]
    assert merge_subjects(diffusion=ldm, autoencoder=None) == ldm
    assert merge_subjects(diffusion=None, autoencoder=None) is None
    assert merge_subjects(diffusion=ldm, autoencoder={**ae, "salt": "other"}) is None


def test_overlap_checks_record_every_count_and_refuse_unless_allowed():
    judge = training_subjects(_data(), ("train", "val"))
    checks = OverlapChecks()
    checks.subjects("judge J", judge, ["d", ""], against="prep:test")
    checks.models("judge J", judge, training_subjects(_data(), ("test",)), against="generator G")
    checks.models("judge J", judge, None, against="old generator")
    assert checks.to_json() == {"allow_overlap": False, "total": 0, "checks": [
        {"model": "judge J", "against": "prep:test", "overlap": 0, "of": 1},
        {"model": "judge J", "against": "generator G", "overlap": 0, "of": 1},
        {"model": "judge J", "against": "old generator", "overlap": None, "of": None,
         "reason": "no training_subjects recorded"}]}
    with pytest.raises(DataError, match="judge J vs prep:train: 2 of 2 evaluated subjects"):
        checks.subjects("judge J", judge, ["a", "b"], against="prep:train")
    allowed = OverlapChecks(allow_overlap=True)
    allowed.subjects("judge J", judge, ["a", "b"], against="prep:train")
    assert allowed.total == 2 and allowed.warnings() == [
        "subject overlap allowed (allow_overlap): judge J shares 2 of 2 subjects with prep:train"]


def test_synthetic_sets_name_their_generators_subjects():
    record = training_subjects(_data(), ("train",))
    assert generator_subjects({"model": {"path": "m", "training_subjects": record}}) == record  # uterosynth sample
    assert generator_subjects({"model": "autoencoder:ae", "training_subjects": record}) == record  # baselines
    assert generator_subjects({"model": {"path": "m"}}) is None and generator_subjects({}) is None  # older sets
    assert source_subjects({"source_subjects": record}) == record and source_subjects({}) is None
