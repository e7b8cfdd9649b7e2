"""The gencli app: help, version, lazy imports, error handling (exit codes, one-line messages)."""

from __future__ import annotations

import warnings

import pytest
from cli_support import _isolated, cli, gencli_proc  # noqa: F401

COMMANDS = ("train", "sample", "interpolate", "translate", "export", "evaluate", "models", "pull", "convert")


def test_help_lists_every_command():
    r = gencli_proc("--help")
    assert r.code == 0, r.err
    text = r.out.decode()
    for name in COMMANDS:
        assert f"\n  {name} " in text, name
    assert r.err == ""


def test_version_and_lazy_import():
    from gencli import __version__

    r = gencli_proc("--version")
    assert r.code == 0 and r.out.decode().strip() == f"gencli {__version__}"
    probe = ("import sys, gencli.cli.app; heavy = sorted(m for m in ('torch', 'numpy', 'PIL', 'safetensors', "
             "'huggingface_hub', 'rich.progress') if m in sys.modules); print(heavy); "
             "assert not heavy, heavy")
    r = gencli_proc(code=probe)
    assert r.code == 0, r.out + r.err.encode()


def test_command_help_does_not_import_torch():
    probe = ("import sys\nfrom gencli.cli.app import run\n"
             "for cmd in ('sample', 'train', 'interpolate', 'translate', 'models', 'pull', 'convert'):\n"
             "    assert run([cmd, '--help']) == 0\n"
             "assert 'torch' not in sys.modules")
    r = gencli_proc(code=probe)
    assert r.code == 0, r.err


def test_unknown_model_is_a_usage_error_without_torch():
    r = gencli_proc("sample", "foo", "-o", "x.png")
    r.assert_error(2, "unknown model 'foo'", "ddpm", "ddim")


def test_missing_weights_is_one_line_exit_1(tmp_path):
    r = gencli_proc("sample", "ddpm", "--weights", str(tmp_path / "missing.safetensors"), "-o", str(tmp_path / "x.png"))
    r.assert_error(1, "missing.safetensors")
    assert not (tmp_path / "x.png").exists()


def test_no_arguments_prints_help_exit_2(capsysbinary):
    r = cli(capsysbinary)
    assert r.code == 2 and "Usage:" in r.err and "sample" in r.err and r.out == b""


@pytest.mark.parametrize("args, needle", [
    (["frobnicate"], "No such command"),
    (["sample", "ddpm", "--steps", "abc"], "--steps"),
    (["sample", "ddpm", "--no-such-option"], "--no-such-option"),
    (["sample"], "MODEL"),
    (["sample", "ddpm", "--precision", "fp8", "-o", "x.png"], "--precision"),
    (["sample", "ddpm", "--sampler", "euler", "-o", "x.png"], "--sampler"),
])
def test_usage_errors_are_one_line_exit_2(capsysbinary, args, needle):
    cli(capsysbinary, *args).assert_error(2, needle)


def test_no_output_on_a_terminal_is_a_usage_error(capsysbinary, monkeypatch):
    from gencli.cli import common

    monkeypatch.setattr(common, "stdout_is_tty", lambda: True)
    cli(capsysbinary, "sample", "ddpm").assert_error(2, "no output given: pass -o FILE.png, -o DIR/ or -o -")


def test_no_png_to_a_terminal(capsysbinary, monkeypatch):
    from gencli.cli import common

    monkeypatch.setattr(common, "stdout_is_tty", lambda: True)
    cli(capsysbinary, "sample", "ddpm", "-o", "-").assert_error(2, "refusing to write a PNG to the terminal")


def test_json_and_stdout_conflict(capsysbinary):
    cli(capsysbinary, "sample", "ddpm", "--json", "-o", "-").assert_error(2, "--json")


def _patch_models(monkeypatch, exc):
    from gencli.cli import manage

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(manage, "_describe", boom)


def test_internal_error_is_one_line_and_debug_shows_traceback(capsysbinary, monkeypatch):
    _patch_models(monkeypatch, RuntimeError("boom\nsecond line"))
    r = cli(capsysbinary, "models")
    line = r.assert_error(1)
    assert line == "gencli: internal error: RuntimeError: boom; second line (rerun with --debug for the traceback)"
    r = cli(capsysbinary, "--debug", "models")
    assert r.code == 1 and "Traceback" in r.err and r.err_lines[-1].startswith("gencli: internal error")
    monkeypatch.setenv("GENCLI_DEBUG", "1")
    r = cli(capsysbinary, "models")
    assert r.code == 1 and "Traceback" in r.err


def test_gencli_error_uses_its_exit_code(capsysbinary, monkeypatch):
    from gencli.errors import CapabilityError, InputError

    _patch_models(monkeypatch, InputError("bad.png: truncated"))
    cli(capsysbinary, "models").assert_error(1, "gencli: bad.png: truncated")
    _patch_models(monkeypatch, CapabilityError("x cannot y"))
    cli(capsysbinary, "models").assert_error(2, "x cannot y")


def test_keyboard_interrupt_exits_130(capsysbinary, monkeypatch):
    _patch_models(monkeypatch, KeyboardInterrupt())
    cli(capsysbinary, "models").assert_error(130, "interrupted")


def test_library_warnings_become_one_line(capsysbinary, monkeypatch):
    from gencli.cli import manage

    real = manage._describe

    def noisy(spec):
        warnings.warn("something odd\nin two lines", UserWarning)
        return real(spec)

    monkeypatch.setattr(manage, "_describe", noisy)
    r = cli(capsysbinary, "models", "--json")
    assert r.code == 0
    assert r.err_lines and all(l == "gencli: warning: something odd; in two lines" for l in r.err_lines), r.err


def test_evaluate_is_wired(capsysbinary):
    r = cli(capsysbinary, "evaluate", "--help")
    assert r.code == 0 and b"evaluate" in r.out
