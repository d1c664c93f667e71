"""Progress on stderr: a tqdm bar on a terminal, plain lines in a log or pipe, plain lines without tqdm."""

from __future__ import annotations

import builtins
import fcntl
import io
import os
import select
import struct
import termios

from edgeport.progress import Progress, track


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_tqdm_bar_redrawn_in_place():
    stream = Terminal()
    bar = Progress(10, "evaluate m.onnx", stream=stream)
    assert bar.is_bar
    for _ in range(10):
        bar.update()
    text = stream.getvalue()
    assert "\r" in text and "evaluate m.onnx" in text and "10/10" in text and "100%" in text
    assert text.count("\n") <= 1  # one line, redrawn


def test_a_real_pty_gets_the_bar_too():
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    with os.fdopen(slave, "w") as tty:
        bar = Progress(3, "calibration set", stream=tty)
        assert bar.is_bar
        for _ in range(3):
            bar.update()
        tty.flush()
        out = b""
        while select.select([master], [], [], 0.5)[0]:
            out += os.read(master, 65536)
    os.close(master)
    out = out.decode()
    assert "calibration set" in out and "3/3" in out


def test_a_pipe_gets_a_few_plain_lines():
    stream = io.StringIO()
    bar = Progress(80, "evaluate m.onnx", stream=stream)
    assert not bar.is_bar
    for _ in range(80):
        bar.update()
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "evaluate m.onnx: 80/80 (100%)" and 3 <= len(lines) <= 6 and "\r" not in stream.getvalue()


def test_without_tqdm_a_terminal_gets_plain_lines(monkeypatch):
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError("tqdm hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    stream = Terminal()
    bar = Progress(4, "perturb noise", stream=stream)
    assert not bar.is_bar
    for _ in range(4):
        bar.update()
    assert stream.getvalue().splitlines()[-1] == "perturb noise: 4/4 (100%)"


def test_disabled_progress_writes_nothing_and_track_yields_every_item():
    stream = Terminal()
    bar = Progress(5, "quiet", stream=stream, enabled=False)
    bar.update(5)
    assert stream.getvalue() == "" and not bar.is_bar
    assert list(track(iter("abc"), 3, "letters", enabled=False)) == ["a", "b", "c"]
