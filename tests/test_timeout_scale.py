"""wflp.testing's deadlines: one setting (WFLP_TEST_TIMEOUT_SCALE) stretches them all, and
waits poll a condition instead of sleeping for a guessed time."""

import time

import pytest
from wflp import testing_remote
from wflp.testing import TIMEOUT_SCALE_VAR, scaled, timeout_scale, wait_until


def test_scale_defaults_to_one_and_multiplies_every_deadline(monkeypatch):
    monkeypatch.delenv(TIMEOUT_SCALE_VAR, raising=False)
    assert timeout_scale() == 1.0 and scaled(30) == 30
    monkeypatch.setenv(TIMEOUT_SCALE_VAR, " 4 ")
    assert timeout_scale() == 4.0 and scaled(30) == 120
    monkeypatch.setenv(TIMEOUT_SCALE_VAR, "")
    assert scaled(30) == 30


@pytest.mark.parametrize("bad", ["slow", "0", "-2", "nan", "inf"])
def test_bad_scale_names_the_variable(monkeypatch, bad):
    monkeypatch.setenv(TIMEOUT_SCALE_VAR, bad)
    with pytest.raises(ValueError, match=rf"WFLP_TEST_TIMEOUT_SCALE='{bad}' is not a "
                                         r"positive number"):
        scaled(1)


class _Clock:
    """time.monotonic and time.sleep of a machine where each sleep takes *stall* s."""

    def __init__(self, stall):
        self.now, self.stall, self.sleeps = 0.0, stall, 0

    def monotonic(self):
        return self.now

    def sleep(self, _seconds):
        self.sleeps += 1
        self.now += self.stall


def test_wait_returns_the_first_true_value(monkeypatch):
    clock = _Clock(stall=1.0)
    monkeypatch.setattr(time, "monotonic", clock.monotonic)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    answers = iter([None, 0, "", "ready", "later"])
    assert wait_until(lambda: next(answers), 60, "the answer") == "ready"
    assert clock.sleeps == 3


def test_a_condition_met_during_a_stalled_poll_is_not_lost(monkeypatch):
    # a loaded machine: one poll's sleep takes far past the deadline, and the condition
    # came true meanwhile; the check made after the deadline still counts
    clock = _Clock(stall=1000.0)
    monkeypatch.setattr(time, "monotonic", clock.monotonic)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    answers = iter([False, True])
    assert wait_until(lambda: next(answers), 60, "the answer") is True


def test_timeout_names_what_and_the_scaled_limit(monkeypatch):
    monkeypatch.setenv(TIMEOUT_SCALE_VAR, "3")
    clock = _Clock(stall=7.0)
    monkeypatch.setattr(time, "monotonic", clock.monotonic)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    with pytest.raises(AssertionError, match=r"timed out after 30 s waiting for the file "
                                             r"\(WFLP_TEST_TIMEOUT_SCALE=3\)"):
        wait_until(lambda: False, 10, "the file")
    assert clock.now > 30  # it did wait the scaled 30 s, not the 10 asked for
    with pytest.raises(AssertionError, match="timed out after 30 s waiting for the job"):
        testing_remote.wait_until(lambda: False, 10, "the job")  # plugins' kit: the same
