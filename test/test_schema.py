"""The settings schema (core/schema.py): one declaration per setting, and everything made from it.

The parameter file, the ROS descriptors, the run-time sets and the validation messages are all
checked against the declarations here, so a setting added in one place and forgotten in another
fails one of these tests.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from mlmp_ros.catalog import METHOD_INFO, METHOD_NAMES
from mlmp_ros.core import schema
from mlmp_ros.core.config import NODE_GROUPS, Config, ConfigError
from mlmp_ros.core.schema import SEGMENTER, SCHEDULE, Range
from mlmp_ros.robot import ROBOT_ADAPTATION
from mlmp_ros.ros import paramfile
from mlmp_ros.ros.settings import NODE_GROUPS as NODE_SETTING_GROUPS
from mlmp_ros.ros.settings import NodeSettings

CORE = list(schema.settings(Config))
NODE = list(schema.settings(NodeSettings))


def test_the_parameter_file_is_generated_from_the_declarations():
    # Regenerate with: python -m mlmp_ros.ros.paramfile --write
    assert paramfile.PATH.read_text() == paramfile.render(), (
        "config/segment.yaml is out of date with the settings' declarations; "
        "run: python -m mlmp_ros.ros.paramfile --write"
    )
    assert paramfile.ROBOT_PATH.read_text() == paramfile.render(robot=True), (
        "mlmp_ros/config/robot.yaml is out of date; run: python -m mlmp_ros.ros.paramfile --write")
    assert paramfile.main(["--check"]) == 0


def test_the_robot_parameter_file_is_valid_and_differs_only_by_its_recommended_values():
    robot = Config.from_yaml(paramfile.ROBOT_PATH).flat()
    reference = Config.from_yaml(paramfile.PATH).flat()
    differs = {k: v for k, v in robot.items() if reference[k] != v}
    assert differs == {k: v for k, v in ROBOT_ADAPTATION.items() if reference[k] != v}
    assert {k: robot[k] for k in ROBOT_ADAPTATION} == ROBOT_ADAPTATION
    assert robot["adaptation.schedule"] == "async" and robot["adaptation.mode"] == "continual"


def test_every_setting_is_declared_with_help_and_a_default_it_accepts():
    assert {s.name for s in CORE} == set(Config().flat())  # no undeclared field
    for s in CORE + NODE:
        assert s.meta.help.strip(), s.name
        assert schema.value_problem(s.name, s.default, s.meta) is None, s.name
    assert Config().problems() == [] and NodeSettings().problems() == []


@pytest.mark.parametrize("s", [s for s in CORE + NODE if s.meta.choices], ids=lambda s: s.name)
def test_a_value_outside_the_choices_is_refused_naming_them(s):
    problem = schema.value_problem(s.name, "bogus", s.meta)
    assert problem.startswith(f"{s.name} must be one of ") and "'bogus'" in problem
    assert all(str(c) in problem for c in s.meta.choices)


@pytest.mark.parametrize("s", [s for s in CORE + NODE if s.meta.range], ids=lambda s: s.name)
def test_a_value_outside_the_range_is_refused_naming_it(s):
    rng = s.meta.range
    below = rng.low if rng.low_open else rng.low - 1
    for bad in (below, math.nan):
        problem = schema.value_problem(s.name, bad, s.meta)
        assert problem and problem.startswith(f"{s.name} must be ") and rng.text() in problem, (bad, problem)


def test_config_refuses_bad_values_through_the_builder():
    with pytest.raises(ConfigError) as err:
        Config.from_mapping({"adaptation.mode": "sometimes", "adaptation.safeguards.ensemble_alpha": 0.0,
                             "input.depth": 3, "attention": "sclip", "features": "reduced"})
    text = str(err.value)
    assert "adaptation.mode must be one of off, episodic, continual, not 'sometimes'" in text
    assert "adaptation.safeguards.ensemble_alpha must be in (0, 1], not 0.0" in text
    assert "features 'reduced' is defined for naclip and clip attention" in text  # a rule across two settings


def test_ranges_read_as_written():
    assert Range.parse("[0, 1)") == Range(0, 1, False, True)
    assert Range.parse("(0, inf)").text() == "> 0" and Range.parse("[1, inf)").text() == ">= 1"
    assert Range.parse("(0, 1]").text() == "in (0, 1]"
    r = Range.parse("[0, 1)")
    assert 0 in r and 0.5 in r and 1 not in r and math.nan not in r and True not in r
    with pytest.raises(ValueError, match="a range is written like"):
        Range.parse("0..1")


def test_the_run_time_sets_come_from_the_declarations():
    from mlmp_ros.core.schedule import SCHEDULE_SETTINGS
    from mlmp_ros.core.segmenter import RUNTIME_SETTINGS

    assert set(RUNTIME_SETTINGS) == {s.name for s in CORE if s.meta.runtime == SEGMENTER}
    assert set(SCHEDULE_SETTINGS) == {s.name for s in CORE if s.meta.runtime == SCHEDULE}
    assert {"classes", "adaptation.mode", "adaptation.steps", "adaptation.lr"} == set(RUNTIME_SETTINGS)


def test_every_listed_method_has_a_class_and_no_class_is_unlisted():
    from mlmp_ros.core.methods import METHODS, register

    assert tuple(METHODS) and set(METHODS) == set(METHOD_NAMES)
    entropy_field = next(s for s in CORE if s.name == "adaptation.method")
    assert entropy_field.meta.choices == METHOD_NAMES

    class Unlisted:
        name = "unlisted"

    with pytest.raises(RuntimeError, match="not in mlmp_ros/catalog.py"):
        register(Unlisted)
    # reliable_e0 is refused for the methods without an entropy loss, named from the catalog.
    no_entropy = next(n for n, i in METHOD_INFO.items() if not i.entropy_loss)
    with pytest.raises(ConfigError, match=f"{no_entropy} has none"):
        Config().replace(**{"adaptation.method": no_entropy, "adaptation.safeguards.reliable_e0": 0.4})


def test_the_core_skips_exactly_the_node_groups():
    assert set(NODE_GROUPS) == set(NODE_SETTING_GROUPS)


def test_node_settings_are_validated_by_their_declarations():
    with pytest.raises(ConfigError) as err:
        NodeSettings.from_values({"input.reliability": "sometimes", "output.blend": 1.5, "input.depth": 0,
                                  "diagnostics.stall_warn_factor": 30.0})
    text = str(err.value)
    assert "input.reliability must be one of auto, reliable, best_effort, not 'sometimes'" in text
    assert "output.blend must be in [0, 1], not 1.5" in text
    assert "input.depth must be in [1, 1000], not 0" in text
    assert "1 <= warn <= error" in text
    with pytest.raises(ConfigError, match="'input.max_windows': expected an integer"):
        NodeSettings.from_values({"input.max_windows": "many"})
    assert NodeSettings().replace({"output.blend": 0.5}).blend == 0.5


def test_ros_descriptors_carry_the_declared_ranges_and_choices():
    pytest.importorskip("rcl_interfaces")
    from mlmp_ros.ros.params import RUNTIME_PARAMETERS, parameter_specs

    specs = {spec.name: spec for spec in parameter_specs()}
    declared = {s.name: s for s in CORE + NODE}
    assert set(specs) == set(declared)
    for name, s in declared.items():
        desc = specs[name].descriptor
        assert desc.read_only == (name not in RUNTIME_PARAMETERS) == (not s.meta.runtime), name
        assert desc.description.startswith(s.meta.help), name
        if s.meta.choices:
            assert desc.additional_constraints == "one of: " + ", ".join(map(str, s.meta.choices)), name
        rng = s.meta.range
        if rng and rng.finite and s.type is float:
            (r,) = desc.floating_point_range
            assert (r.from_value, r.to_value) == (rng.low, rng.high), name
        elif rng and rng.finite and s.type is int:
            (r,) = desc.integer_range
            assert (r.from_value, r.to_value) == (rng.low, rng.high), name
        else:
            assert not desc.floating_point_range and not desc.integer_range, name
    blend = specs["output.blend"].descriptor.floating_point_range[0]
    assert (blend.from_value, blend.to_value) == (0.0, 1.0)


def test_settings_table_lists_every_core_setting():
    table = schema.settings_table(Config)
    for s in CORE:
        assert s.name in table
    assert "adaptation.steps" in table and "[run time]" in table


def test_a_new_setting_needs_only_its_field(tmp_path):
    """A throwaway setting added to a settings dataclass gets validation, run-time flag and docs."""

    @dataclasses.dataclass
    class Extra:
        knob: float = schema.setting(0.5, help="a throwaway knob", range="[0, 1]", runtime=SCHEDULE)

    (s,) = schema.settings(Extra)
    assert schema.runtime_names(Extra) == ("knob",)
    assert schema.problems(Extra(knob=2.0)) == ["knob must be in [0, 1], not 2.0"]
    problems: list[str] = []
    assert schema.build(Extra, {"knob": "0.25"}, problems).knob == 0.25 and not problems
    schema.build(Extra, {"knb": 1}, problems)
    assert problems == ["unknown setting 'knb' (known: knob)"]
    assert schema.describe(s) == "a throwaway knob (in [0, 1]) [run time]"
