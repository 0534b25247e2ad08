"""Progress bars (`harness.progress`): shown on a terminal unless CI says so, silent elsewhere;
HARNESS_PROGRESS=0/1 decides either way."""

import io
import sys

import pytest

from harness.progress import progress_bar, progress_enabled


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def unset(monkeypatch):
    """No HARNESS_PROGRESS (the test suite sets it to 0) and no CI."""
    monkeypatch.delenv("HARNESS_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "terminal, env, shown",
    [
        (True, {}, True),
        (False, {}, False),  # a log file or a pipe: nobody watches
        (True, {"CI": "true"}, False),
        (True, {"CI": "1"}, False),
        (True, {"CI": "YES"}, False),
        (True, {"CI": "false"}, True),
        (True, {"HARNESS_PROGRESS": "0"}, False),
        (False, {"HARNESS_PROGRESS": "1"}, True),
        (True, {"HARNESS_PROGRESS": "1", "CI": "true"}, True),  # the explicit switch wins over CI
        (False, {"HARNESS_PROGRESS": "yes"}, False),  # only 0 and 1 switch; anything else: the terminal decides
    ],
)
def test_progress_enabled(unset, terminal, env, shown):
    unset.setattr(sys, "stderr", Terminal() if terminal else io.StringIO())
    for key, value in env.items():
        unset.setenv(key, value)
    assert progress_enabled() is shown


def test_a_bar_on_a_stream_that_is_no_terminal_prints_nothing(unset, capsys):
    bar = progress_bar(total=3, desc="train", unit="epoch")
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert bar.disable and capsys.readouterr().err == ""


def test_a_shown_bar_prints_its_line_and_clears_it_when_closed(unset):
    unset.setenv("HARNESS_PROGRESS", "1")
    out = io.StringIO()
    # no refresh between the first line and the close, whatever the machine's speed
    bar = progress_bar(total=3, desc="train", unit="epoch", file=out, mininterval=float("inf"))
    line = "train:   0%|          | 0/3 [00:00<?, ?epoch/s]"
    assert out.getvalue() == "\r" + line
    for _ in range(3):
        bar.update(1)
    assert bar.n == 3
    bar.close()
    # leave=False: the line is overwritten with spaces, so nothing of the bar stays in the log
    assert out.getvalue() == "\r" + line + "\r" + " " * len(line) + "\r"
