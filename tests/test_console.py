"""What ``radio-clean image`` prints: on a terminal, a progress bar below the per-cycle lines.

The run goes through the command line in a subprocess whose stderr is a
pseudo-terminal (as in an interactive shell), and again on a pipe (as in a
batch log), on the demo MS at 64 pixels.
"""

import os
import pty
import re
import select
import subprocess
import sys

import pytest

ARGS = ["--set", "imsize=64", "--set", "cell=1arcsec", "--set", "niter=40", "--set", "cycleniter=10"]
ARGS += ["--set", "cyclefactor=4", "--set", "datacolumn=data", "--set", "weighting=briggs"]
BAR = re.compile(
    r"\r\x1b\[K\[([#.]{24})\] (start|cycle\d{3}|finish\d{3}): (\d+) iterations of 40, (\d)/1 images"
)


def _run_on_terminal(argv, timeout=300):
    """Run ``python -m radio_clean.cli argv`` with stderr on a pseudo-terminal; return (status, stderr)."""
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "radio_clean.cli", *map(str, argv)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=secondary,
        env={**os.environ, "TERM": "xterm"},
    )
    os.close(secondary)
    chunks = []
    while True:
        ready, _, _ = select.select([main], [], [], timeout)
        if not ready:
            process.kill()
            pytest.fail(f"radio-clean image printed nothing for {timeout} s")
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal is closed once the process has exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    stdout = process.stdout.read().decode()
    process.wait(timeout=60)
    return process.returncode, b"".join(chunks).decode(errors="replace"), stdout


def test_a_terminal_gets_a_progress_bar_below_the_cycle_lines(ms_3c273, tmp_path):
    argv = ["image", ms_3c273, "--repo", tmp_path / "repo", "--export", tmp_path / "out", *ARGS]
    status, terminal, stdout = _run_on_terminal(argv)
    assert status == 0, terminal
    bars = BAR.findall(terminal)  # drawn after each step, and again below each log line
    steps = list(dict.fromkeys(step for _, step, _, _ in bars))
    assert steps[0] == "start" and steps[-1].startswith("finish"), steps
    iterations = [int(done) for _, _, done, _ in bars]
    assert iterations == sorted(iterations) and iterations[-1] == 40, iterations
    # Full when the image is done; every log line starts on a cleared line, never after the bar.
    assert bars[-1][0] == "#" * 24 and bars[-1][3] == "1"
    for line in terminal.replace("\r\n", "\n").split("\n"):
        text = line.rsplit("\r\x1b[K", 1)[-1]
        assert not text.startswith("[") or BAR.match("\r\x1b[K" + text), repr(line)
    cycle_lines = [line for line in terminal.splitlines() if "minor cycle" in line]
    # One per minor cycle run: start's, and each cycle step's but the last (which found CLEAN stopped).
    assert len(cycle_lines) == len([step for step in steps if step.startswith("cycle")])
    assert "iteration limit (stop code 1) after 40 iterations" in terminal
    # The bar is cleared at the end; the summary is printed on stdout as without a terminal.
    assert terminal.endswith("\r\x1b[K"), repr(terminal[-200:])
    assert "iteration limit after 40 iterations" in stdout


def test_a_pipe_gets_no_progress_bar(ms_3c273, tmp_path):
    argv = ["image", ms_3c273, "--repo", tmp_path / "repo", "--export", tmp_path / "out", *ARGS]
    command = [sys.executable, "-m", "radio_clean.cli", *map(str, argv)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stderr and "\r" not in result.stderr
    assert "minor cycle 1 from peak residual" in result.stderr
