"""Hashed training subjects in model artifacts, and the refusal to evaluate them."""

from __future__ import annotations

import pytest

from uterosynth.core.errors import DataError
from uterosynth.data.manifest import PreparedDataset
from uterosynth.data.subjects import SALT, check_disjoint, hash_subject, training_subjects


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
    assert check_disjoint(record, ["a", "c", "d"], what="judge", allow_overlap=True) == 2


def test_artifacts_without_a_record_are_not_checked():
    assert check_disjoint(None, ["a"], what="old judge") == 0
