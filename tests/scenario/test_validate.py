"""``moltsim validate`` and the scenario schema: shipped scenarios pass; bad ones are refused
before anything starts, every problem listed with its field path and line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from moltsim.domain.actions import HANDLE_PATTERN
from moltsim.scenario.load import load_scenario, plan_agents
from moltsim.scenario.schema import parse_duration
from moltsim.tomlfile import ConfigError
from tests.scenario.conftest import FIVE, ROOT, SCENARIOS, cli, persona_path

NITPICK = persona_path("nitpick_9000")
FRESH = persona_path("fresh_wick")
SECRET = "sk-test-DO-NOT-ECHO-4242"

# --- shipped scenarios ----------------------------------------------------------------------

SHIPPED = sorted(SCENARIOS.glob("*.toml"))


def test_the_issue_names_five_scenarios() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"smoke", "default", "overnight", "llm-mixed", "policies"} <= names


def test_every_shipped_scenario_validates() -> None:
    # One process per scenario, all at once: each is a real `moltsim validate`.
    processes = {
        path: subprocess.Popen(
            [sys.executable, "-m", "moltsim.cli", "validate", str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for path in SHIPPED
    }
    for path, process in processes.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"{path.name}: {err}"
        assert f"{path}: ok: " in out, out
        assert err.strip() == "", err
        if path.stem == "smoke":
            assert "10 agents" in out and "stepped" in out


def test_shipped_scenarios_are_what_the_issue_describes() -> None:
    smoke = load_scenario(SCENARIOS / "smoke.toml")
    smoke_agents = plan_agents(smoke, SCENARIOS / "smoke.toml")
    assert len(smoke_agents) == 10
    assert smoke.clock.mode == "stepped"
    assert {a.brain for a in smoke_agents} == {"offline"}

    default = load_scenario(SCENARIOS / "default.toml")
    default_agents = plan_agents(default, SCENARIOS / "default.toml")
    assert 40 <= len(default_agents) <= 60
    assert {a.brain for a in default_agents} == {"offline"}
    assert default.clock.duration == 24 * 3600

    overnight = load_scenario(SCENARIOS / "overnight.toml")
    overnight_agents = plan_agents(overnight, SCENARIOS / "overnight.toml")
    assert len(overnight_agents) >= 1000
    assert overnight.clock.mode == "realtime"
    assert overnight.llm is not None
    # Personas may pin their own brain (bare_minimum, quiet_quokka are offline ones).
    assert [a.brain for a in overnight_agents].count("openai") > 0.9 * len(overnight_agents)
    budgets = overnight.budgets
    assert budgets.max_wall_time and budgets.max_llm_tokens and budgets.max_cost_usd

    mixed = load_scenario(SCENARIOS / "llm-mixed.toml")
    mixed_agents = plan_agents(mixed, SCENARIOS / "llm-mixed.toml")
    brains = [a.brain for a in mixed_agents]
    assert 0 < brains.count("openai") < brains.count("offline")

    policies = load_scenario(SCENARIOS / "policies.toml")
    assert policies.rules.proactive_contact.enabled
    assert "objection" in {e.kind for e in policies.events}


# --- bad scenarios --------------------------------------------------------------------------

PROBLEM = re.compile(r"^(?:(?P<line>\d+):)? (?P<field>\S+): (?P<message>.+)$")
"""A problem as ConfigError lists it: ``12: clock.tik: message`` or `` (file): message``."""


def reported(exc: ConfigError) -> dict[str, tuple[int | None, str]]:
    """field path -> (line, message) of every problem a ConfigError lists."""
    out: dict[str, tuple[int | None, str]] = {}
    for problem in exc.problems:
        match = PROBLEM.match(problem)
        assert match is not None, f"unparsable problem {problem!r}"
        line = match["line"]
        out[match["field"]] = (int(line) if line else None, match["message"])
    return out


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of ``text`` that contains ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def write(tmp_path: Path, text: str, name: str = "scenario.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


EVERY_PROBLEM = f"""\
name = "bad"
seed = "seven"
colour = "blue"

[clock]
mode = "stepped"
duration = "four hours"
tik = "10m"

[[agents]]
personas = ["no-such-dir/*.toml"]
count = "two"

[llm]
base_url = "http://127.0.0.1:9/v1"
model = "m"
api_key = "{SECRET}"

[rules.rate_limits]
post_every = 5

[budgets]
max_actions = 0
"""


def expected_problems(text: str) -> dict[str, int]:
    return {
        "seed": line_of(text, 'seed = "seven"'),
        "colour": line_of(text, "colour"),
        "clock.duration": line_of(text, "four hours"),
        "clock.tik": line_of(text, "tik ="),
        "agents.0.personas": line_of(text, "no-such-dir"),
        "agents.0.count": line_of(text, 'count = "two"'),
        "rules.rate_limits.post_every": line_of(text, "post_every"),
        "budgets.max_actions": line_of(text, "max_actions = 0"),
    }


def test_validate_lists_every_problem_with_its_field_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, EVERY_PROBLEM)
    result = cli("validate", path)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    lines = re.findall(rf"^\s*{re.escape(str(path))}:(\d+): (\S+): (.+)$", out, re.MULTILINE)
    got = {field: int(line) for line, field, _ in lines}
    expected = expected_problems(EVERY_PROBLEM)
    # The inline key: on the [llm] table or on the api_key line, either names it.
    llm = {k: v for k, v in got.items() if k.startswith("llm")}
    assert len(llm) == 1, out
    ((llm_field, llm_line),) = llm.items()
    assert (llm_field, llm_line) in {
        ("llm", line_of(EVERY_PROBLEM, "[llm]")),
        ("llm.api_key", line_of(EVERY_PROBLEM, "api_key =")),
    }, out
    assert {k: v for k, v in got.items() if not k.startswith("llm")} == expected, out
    assert f"{len(expected) + 1} problem(s)" in out
    messages = {field: message for _, field, message in lines}
    assert "api_key_env" in messages[llm_field]  # says where the key belongs instead
    assert "no-such-dir" in messages["agents.0.personas"]
    assert SECRET not in out, "validate echoed the inline API key"


def test_run_refuses_a_bad_scenario_before_anything_starts(tmp_path: Path) -> None:
    path = write(tmp_path, EVERY_PROBLEM)
    run_dir = tmp_path / "run"
    result = cli("run", path, "--run-dir", run_dir, cwd=tmp_path)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "clock.tik" in out and "budgets.max_actions" in out and "colour" in out
    assert SECRET not in out
    assert not run_dir.exists()
    assert not (tmp_path / "runs").exists()


OPENAI_WITHOUT_LLM = f"""\
name = "no-llm"

[[agents]]
personas = ["{NITPICK}"]
brain = "openai"
"""


@pytest.mark.parametrize(
    ("text", "field", "needle"),
    [
        pytest.param('name = "x"\nbogus = 1\n[[agents]]\npersonas = ["P"]\n', "bogus", "bogus",
                     id="unknown-top-level-key"),
        pytest.param('name = "x"\n[clock]\nspeeed = 2\n[[agents]]\npersonas = ["P"]\n',
                     "clock.speeed", "speeed", id="unknown-key-in-section"),
        pytest.param('name = "x"\n[[agents]]\npersonas = ["P"]\nheartbeet = "1h"\n',
                     "agents.0.heartbeet", "heartbeet", id="unknown-key-in-agent-group"),
        pytest.param('name = "x"\n[clock]\nspeed = "fast"\n[[agents]]\npersonas = ["P"]\n',
                     "clock.speed", "speed =", id="wrong-type"),
        pytest.param('name = "x"\n[[agents]]\npersonas = "P"\n',
                     "agents.0.personas", "personas =", id="string-for-a-list"),
        pytest.param('name = "x"\n[[agents]]\npersonas = ["missing.toml"]\n',
                     "agents.0.personas", "personas =", id="missing-persona-file"),
        pytest.param('name = "x"\n[[agents]]\npersonas = ["nowhere/*.toml"]\n',
                     "agents.0.personas", "personas =", id="glob-matching-nothing"),
        pytest.param('name = "x"\n[[agents]]\npersonas = ["P"]\n[llm]\nbase_url = "http://h/v1"\n'
                     f'model = "m"\napi_key = "{SECRET}"\n', "llm", "[llm]", id="inline-api-key"),
        pytest.param('name = "x"\n[[agents]]\npersonas = ["P"]\n[budgets]\nmax_actions = 0\n',
                     "budgets.max_actions", "max_actions", id="zero-action-budget"),
        pytest.param('name = "x"\n[[agents]]\npersonas = ["P"]\n[budgets]\nmax_wall_time = "0s"\n',
                     "budgets.max_wall_time", "max_wall_time", id="zero-wall-time-budget"),
        pytest.param('name = "x"\n[clock]\nduration = "a while"\n[[agents]]\npersonas = ["P"]\n',
                     "clock.duration", "duration", id="bad-duration"),
        pytest.param('name = "x"\n[clock]\nduration = "-3h"\n[[agents]]\npersonas = ["P"]\n',
                     "clock.duration", "duration", id="negative-duration"),
        pytest.param('name = "x"\n[[agents]]\npersonas = ["P"]\njoin_at = "soon"\n',
                     "agents.0.join_at", "join_at", id="bad-offset"),
        pytest.param('name = "x"\n[[agents]]\npersonas = ["P"]\n[[events]]\nat = "1h"\n'
                     'kind = "objection"\n', "events.0", "[[events]]", id="event-missing-agent"),
        pytest.param(OPENAI_WITHOUT_LLM.replace(str(NITPICK), "P"), "agents.0.brain", "brain",
                     id="openai-brain-without-llm"),
    ],
)  # fmt: skip
def test_each_problem_names_its_field_and_line(
    tmp_path: Path, text: str, field: str, needle: str
) -> None:
    text = text.replace('"P"', f'"{NITPICK}"')
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    problems = reported(caught.value)
    if field == "llm" and "llm.api_key" in problems:  # naming the key itself is as good
        field, needle = "llm.api_key", "api_key ="
    assert field in problems, caught.value.problems
    line, message = problems[field]
    assert line == line_of(text, needle), caught.value.problems
    assert message
    assert SECRET not in str(caught.value)


def test_a_persona_file_with_errors_is_reported_with_its_own_path_and_line(tmp_path: Path) -> None:
    persona = tmp_path / "broken.toml"
    persona.write_text(NITPICK.read_text().replace('tone = "', 'tone = 5 #"', 1))
    path = write(tmp_path, 'name = "x"\n[[agents]]\npersonas = ["broken.toml"]\n')
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    line = line_of(persona.read_text(), "tone = 5")
    assert any(f"{persona}:{line}: voice.tone:" in problem for problem in caught.value.problems), (
        caught.value.problems
    )


def test_an_llm_run_without_its_key_in_the_environment_is_refused(tmp_path: Path) -> None:
    text = OPENAI_WITHOUT_LLM + (
        '\n[llm]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
        'api_key_env = "MOLTSIM_TEST_KEY_THAT_IS_NEVER_SET"\n'
    )
    path = write(tmp_path, text)
    load_scenario(path)  # the file is fine; the environment is not
    result = cli("run", path, "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert result.returncode != 0
    assert "MOLTSIM_TEST_KEY_THAT_IS_NEVER_SET" in result.stderr
    assert not (tmp_path / "run").exists()


def test_run_refuses_a_bad_duration_override(tmp_path: Path) -> None:
    result = cli("run", SCENARIOS / "smoke.toml", "--run-dir", tmp_path / "run",
                 "--duration", "forever", cwd=tmp_path)  # fmt: skip
    assert result.returncode != 0
    assert "--duration" in result.stderr
    assert not (tmp_path / "run").exists()


def test_openai_without_llm_is_listed_with_the_other_problems(tmp_path: Path) -> None:
    path = write(tmp_path, OPENAI_WITHOUT_LLM + "colour = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    text = " ".join(caught.value.problems)
    assert "agents.0.colour" in text
    assert "[llm]" in text


def test_problems_in_later_array_entries_point_at_their_own_lines(tmp_path: Path) -> None:
    text = f"""\
name = "x"

[[submolts]]
name = "general"

[[submolts]]
name = "Not A Valid Name"

[[agents]]
personas = ["{NITPICK}"]
count = 2

[[agents]]
personas = ["{FRESH}"]
count = "many"
"""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    problems = reported(caught.value)
    assert problems["agents.1.count"][0] == line_of(text, '"many"'), caught.value.problems
    assert problems["submolts.1.name"][0] == line_of(text, "Not A Valid"), caught.value.problems


def test_every_missing_persona_file_of_a_group_is_listed(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\n[[agents]]\npersonas = ["one.toml", "two.toml"]\n')
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    text = " ".join(caught.value.problems)
    assert "one.toml" in text and "two.toml" in text


def test_persona_problems_are_listed_with_scenario_problems(tmp_path: Path) -> None:
    persona = tmp_path / "broken.toml"
    persona.write_text(NITPICK.read_text().replace('tone = "', 'tone = 5 #"', 1))
    path = write(tmp_path, 'name = "x"\ncolour = 1\n[[agents]]\npersonas = ["broken.toml"]\n')
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    text = " ".join(caught.value.problems)
    assert "colour" in text and "voice.tone" in text


# --- parse_duration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0), (2.5, 2.5), ("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("24h", 86400.0),
        ("1.5h", 5400.0), ("2d", 172800.0), ("1w", 604800.0), (" 10 m ", 600.0), ("0", 0.0),
    ],
)  # fmt: skip
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", ["", "h", "ten minutes", "10x", "-5m", "5 m s", "1e3", "10M", True, None, [10]]
)
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


# --- plan_agents ----------------------------------------------------------------------------


def persona_copy(tmp_path: Path, handle: str, source: Path = NITPICK) -> Path:
    text = re.sub(r'(?m)^handle = ".*"$', f'handle = "{handle}"', source.read_text())
    path = tmp_path / f"{handle.lower()}-{len(list(tmp_path.glob('*.toml')))}.toml"
    path.write_text(text)
    return path


def planned_handles(tmp_path: Path, groups: list[tuple[list[Path], int]]) -> list[str]:
    body = 'name = "plan"\n' + "".join(
        f"[[agents]]\npersonas = [{', '.join(repr(str(p)) for p in files)}]\ncount = {count}\n"
        for files, count in groups
    )
    path = write(tmp_path, body, "plan-scenario.toml")
    return [a.handle for a in plan_agents(load_scenario(path), path)]


def assert_valid_handles(handles: list[str]) -> None:
    assert len({h.lower() for h in handles}) == len(handles), handles
    for handle in handles:
        assert len(handle) <= 32, handle
        assert re.match(HANDLE_PATTERN, handle), handle


def test_plan_of_the_smoke_scenario() -> None:
    path = SCENARIOS / "smoke.toml"
    planned = plan_agents(load_scenario(path), path)
    handles = [a.handle for a in planned]
    assert handles == [h for p in FIVE for h in (p, f"{p}_2")]
    assert_valid_handles(handles)
    assert {a.heartbeat_s for a in planned} == {3600.0}
    assert {a.join_at for a in planned} == {0.0}


def test_copies_are_numbered_in_order(tmp_path: Path) -> None:
    handles = planned_handles(tmp_path, [([NITPICK, FRESH], 3)])
    assert handles == [
        "nitpick_9000", "nitpick_9000_2", "nitpick_9000_3",
        "fresh_wick", "fresh_wick_2", "fresh_wick_3",
    ]  # fmt: skip


def test_numbering_continues_across_groups(tmp_path: Path) -> None:
    handles = planned_handles(tmp_path, [([NITPICK], 2), ([NITPICK, FRESH], 2)])
    assert handles == [
        "nitpick_9000", "nitpick_9000_2", "nitpick_9000_3", "nitpick_9000_4",
        "fresh_wick", "fresh_wick_2",
    ]  # fmt: skip
    assert_valid_handles(handles)


def test_long_handles_are_cut_to_fit_their_number(tmp_path: Path) -> None:
    long = "a" * 32
    handles = planned_handles(tmp_path, [([persona_copy(tmp_path, long)], 12)])
    assert handles[0] == long
    assert handles[1] == "a" * 30 + "_2"
    assert handles[11] == "a" * 29 + "_12"
    assert_valid_handles(handles)


def test_handles_differing_only_in_case_stay_distinct(tmp_path: Path) -> None:
    files = [persona_copy(tmp_path, "Echo"), persona_copy(tmp_path, "echo", FRESH)]
    handles = planned_handles(tmp_path, [(files, 2)])
    assert_valid_handles(handles)


def test_copies_never_collide_with_another_personas_handle(tmp_path: Path) -> None:
    files = [persona_copy(tmp_path, "echo"), persona_copy(tmp_path, "echo_2", FRESH)]
    handles = planned_handles(tmp_path, [(files, 2)])
    assert_valid_handles(handles)
