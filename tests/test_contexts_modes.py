"""Tests of the context-mode registry (``trajbench.contexts.modes``): what each mode names, the
lookups, and that adding a mode is one entry that the builder then follows."""

from __future__ import annotations

import typing

import pytest
from contexts_support import (
    PROPS,
    check_contract,
    check_mode,
    check_one_property_at_a_time,
    knobs,
    make_store,
    sample_modes,
    seeds,
    store_params,
    vocab_of,
)
from hypothesis import HealthCheck, given, settings

from trajbench.contexts import (
    MODE_NAMES,
    MODES,
    SAME_LEVEL_MODES,
    ContextBuilder,
    ContextConfig,
    ContextMode,
    get_mode,
)
from trajbench.contexts.modes import counterpart, ordered_mode
from trajbench.errors import TrajbenchError


def test_the_registered_modes_are_the_factorial():
    cells = {name: (mode.support, mode.ordered) for name, mode in MODES.items()}
    assert cells == {
        "bursty": ("same", True),
        "trajectories": ("other", True),
        "shuffled": ("same", False),
        "isolated": ("other", False),
        "none": ("none", True),
    }
    assert tuple(MODES) == MODE_NAMES
    assert SAME_LEVEL_MODES == ("bursty", "shuffled")
    for name, mode in MODES.items():
        assert mode.name == name and mode.description


def test_the_config_and_the_command_line_take_their_choices_from_the_registry():
    hints = typing.get_type_hints(ContextConfig)
    assert typing.get_args(hints["mode"]) == MODE_NAMES
    assert ContextConfig().mode in MODE_NAMES


def test_get_mode():
    assert get_mode("isolated") is MODES["isolated"]
    with pytest.raises(TrajbenchError, match=r"unknown context mode 'bursti'; expected one of"):
        get_mode("bursti")
    with pytest.raises(TrajbenchError, match="'trajectories'"):  # the message lists the modes
        get_mode("")


def test_the_ordered_mode_of_a_support_shows_whole_episodes_in_order():
    """What offline accuracy shows a model at each support (the common format's mode)."""
    assert ordered_mode("same") is MODES["bursty"]
    assert ordered_mode("other") is MODES["trajectories"]
    assert ordered_mode("none") is MODES["none"]


def test_counterpart_swaps_the_support_and_keeps_the_structure():
    assert counterpart(MODES["bursty"], "other") is MODES["trajectories"]
    assert counterpart(MODES["trajectories"], "same") is MODES["bursty"]
    assert counterpart(MODES["shuffled"], "other") is MODES["isolated"]
    assert counterpart(MODES["isolated"], "same") is MODES["shuffled"]
    assert counterpart(MODES["bursty"], "none") is MODES["none"]
    with pytest.raises(TrajbenchError, match="no registered mode is 'shuffled' with none-level"):
        counterpart(MODES["shuffled"], "none")


@pytest.fixture
def copies(monkeypatch):
    """Two new modes, each one entry in the registry: copies of bursty and isolated."""
    added = {
        "bursty_copy": ContextMode("bursty_copy", "same", True, "bursty, under another name"),
        "isolated_copy": ContextMode("isolated_copy", "other", False, "isolated, renamed"),
    }
    for name, mode in added.items():
        monkeypatch.setitem(MODES, name, mode)
    return {"bursty_copy": "bursty", "isolated_copy": "isolated"}


def test_a_new_mode_is_one_registry_entry(copies):
    store = make_store(3, n_levels=5, experts=(4, 8))
    for new, old in copies.items():
        assert get_mode(new) is MODES[new]
        ContextConfig(mode=new).validate()
        a = ContextBuilder(store, mode=new, k=3, seed=0).sample(16, seed=5)
        b = ContextBuilder(store, mode=old, k=3, seed=0).sample(16, seed=5)
        for field in a.__dataclass_fields__:
            assert (getattr(a, field) == getattr(b, field)).all(), (new, field)
    with pytest.raises(TrajbenchError, match="p_bursty mixes"):  # unordered: no p_bursty
        ContextConfig(mode="isolated_copy", p_bursty=0.5).validate()
    ContextConfig(mode="bursty_copy", p_bursty=0.5).validate()
    assert counterpart(MODES["bursty_copy"], "other") is MODES["trajectories"]


@settings(PROPS, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(store_params, knobs, seeds)
def test_a_new_mode_keeps_its_properties(copies, params, kw, seed):
    store = make_store(**params)
    modes = (*MODE_NAMES, *copies)
    batches = sample_modes(store, modes, 8, seed, **kw)
    if batches is None:
        return
    cfg = ContextConfig(**kw)
    for mode in copies:
        check_mode(check_contract(store, batches[mode], vocab_of(store)), mode, cfg)
    check_one_property_at_a_time(store, batches)
