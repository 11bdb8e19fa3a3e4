"""The api suite's hypothesis profiles (issue 4): ci is bounded, derandomised and deadline-free;
the profile comes from --hypothesis-profile, else EMBEDGATE_HYPOTHESIS_PROFILE, else ci; a
failure prints the reproducing example."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import settings

from embedgate.api import hypothesis_profiles as hp

SUITE = Path(__file__).resolve().parents[1] / "tests_api"


@pytest.fixture
def restore_profile():
    name = settings.get_current_profile_name()
    yield
    settings.load_profile(name)


def test_hypothesis_ci_profile_is_bounded_derandomised_and_deadline_free(restore_profile):
    hp.register()
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.deadline is None and ci.print_blob and ci.database is None
    assert ci.max_examples <= 100
    for name in ("dev", "nightly"):
        assert settings.get_profile(name).max_examples > ci.max_examples


@pytest.mark.parametrize("option,env,want", [
    (None, {}, ("ci", "default")),
    (None, {hp.ENV: "nightly"}, ("nightly", f"env {hp.ENV}")),
    ("dev", {hp.ENV: "nightly"}, ("dev", "--hypothesis-profile")),
])
def test_hypothesis_profile_choice_option_then_env_then_ci(option, env, want):
    assert hp.choose(option, env) == want


def test_hypothesis_unknown_profile_names_its_source(restore_profile):
    with pytest.raises(ValueError, match=f"'turbo' \\(from env {hp.ENV}\\) is not registered"):
        hp.activate(None, {hp.ENV: "turbo"})
    assert hp.activate(None, {}) == "ci" and settings.get_current_profile_name() == "ci"


@pytest.mark.parametrize("args,env,want", [
    ([], {}, "ci"),
    (["--hypothesis-profile", "nightly"], {}, "nightly"),
    ([], {hp.ENV: "dev"}, "dev"),
])
def test_hypothesis_api_suite_loads_the_chosen_profile(pytester, monkeypatch, args, env, want):
    """The suite's conftest applies the choice; --collect-only needs no server."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pytester.makepyfile(profile_probe=textwrap.dedent("""
        def pytest_collection_finish(session):
            from hypothesis import settings
            print("PROFILE=" + settings.get_current_profile_name())
    """))
    result = pytester.runpytest_subprocess(str(SUITE), "--collect-only", "-q", "-s",
                                           "-p", "no:cacheprovider", "-p", "profile_probe", *args)
    assert result.ret == 0, result.stdout.str()[-2000:]
    result.stdout.fnmatch_lines([f"PROFILE={want}"])


def test_hypothesis_api_suite_refuses_an_unknown_env_profile(pytester, monkeypatch):
    monkeypatch.setenv(hp.ENV, "turbo")
    result = pytester.runpytest_subprocess(str(SUITE), "--collect-only", "-q",
                                           "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*'turbo' (from env {hp.ENV}) is not registered*"])


def test_hypothesis_ci_failure_prints_the_reproducing_example(pytester):
    pytester.makepyfile(textwrap.dedent("""
        from hypothesis import given, strategies as st
        from embedgate.api import hypothesis_profiles
        hypothesis_profiles.activate("ci")

        @given(st.integers())
        def test_small(n):
            assert n < 1000
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*test_small(*", "*n=*", "*@reproduce_failure(*"])
