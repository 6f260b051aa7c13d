import subprocess
import sys

import pytest

from uterosynth import __version__
from uterosynth.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and __version__ in capsys.readouterr().out


def test_help_is_fast_and_lists_app():
    out = subprocess.run([sys.executable, "-m", "uterosynth", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "uterosynth" in out.stdout


def test_help_does_not_import_torch():
    code = "import sys; from uterosynth.cli import app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_unknown_command_exit_code():
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
