"""gencli train: a tiny run on synthetic data, resume, run-folder rules, Ctrl-C, NaN, sampling the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import TINY_OVERRIDES, _isolated, cli, grid_size, png_size  # noqa: F401

CONFIG = json.dumps({**TINY_OVERRIDES, "optimizer": {"lr": 1e-3, "betas": [0.9, 0.999], "warmup_steps": 0}})


def train(capsysbinary, run: str, steps: int, *extra: str):
    args = ["train", "ddpm", "--out", run, "--steps", str(steps), *extra]
    if "--resume" not in extra:
        args += ["--data", "synthetic:24", "--image-size", "8", "--batch-size", "8", "--config", CONFIG,
                 "--log-every", "1", "--sample-n", "0"]
    return cli(capsysbinary, *args)


def log_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


def test_train_resume_and_sample_the_run(capsysbinary, tmp_path):
    from gencli.checkpoints import read_metadata

    run = tmp_path / "runs" / "tiny"
    r = train(capsysbinary, "runs/tiny", 2, "--lr", "2e-3", "--ema-decay", "0.9")
    assert r.code == 0, r.err
    assert r.out == b""
    assert r.err_lines[-1] == ("wrote runs/tiny/model.safetensors (step 2); sample it with: "
                               "gencli sample ddpm --weights runs/tiny -o samples.png")
    meta = read_metadata(run / "model.safetensors")
    assert meta["step"] == 2 and meta["family"] == "ddpm" and meta["dataset"] == "synthetic"
    assert meta["image_size"] == 8 and meta["channels"] == 1 and meta["class_names"] == ["square", "circle"]
    assert meta["config"]["optimizer"]["lr"] == 2e-3 and meta["config"]["num_classes"] == 2
    assert log_steps(run) == [1, 2]

    # the folder holds a run: refuse without --resume, and leave it untouched
    before = (run / "model.safetensors").read_bytes()
    train(capsysbinary, "runs/tiny", 4).assert_error(
        2, "runs/tiny already holds a run (step 2); pass --resume to continue it or --force to start over")
    assert (run / "model.safetensors").read_bytes() == before
    train(capsysbinary, "runs/tiny", 2, "--resume").assert_error(2, "already at step 2")
    train(capsysbinary, "runs/tiny", 4, "--resume", "--lr", "1").assert_error(2, "--lr")

    # resume inherits data, config and train settings from the saved state; --steps is the total
    r = train(capsysbinary, "runs/tiny", 4, "--resume", "--sample-n", "3")
    assert r.code == 0, r.err
    assert read_metadata(run / "model.safetensors")["step"] == 4
    assert log_steps(run) == [1, 2, 3, 4]
    previews = sorted((run / "samples").glob("step*.png"))
    assert [p.name for p in previews] == ["step0000004.png"]

    # sample from the run folder
    r = cli(capsysbinary, "sample", "ddpm", "--weights", "runs/tiny", "--steps", "2", "-n", "2", "-o", "-", "--grid")
    assert r.code == 0, r.err
    assert png_size(r.out) == grid_size(2, 2, 8)

    # --force starts over, deleting only the trainer's files
    (run / "notes.txt").write_text("mine")
    r = train(capsysbinary, "runs/tiny", 1, "--force", "--unconditional")
    assert r.code == 0, r.err
    assert log_steps(run) == [1] and (run / "notes.txt").read_text() == "mine"
    assert not (run / "samples").exists()
    assert read_metadata(run / "model.safetensors")["config"]["num_classes"] is None


def test_resume_without_state_and_leftovers(capsysbinary, tmp_path):
    train(capsysbinary, "fresh", 3, "--resume").assert_error(2, "fresh holds no training state to resume")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "log.jsonl").write_text('{"step": 1}\n')
    train(capsysbinary, "old", 1).assert_error(2, "old holds files of an earlier run (log.jsonl)")
    train(capsysbinary, "x", 1, "--resume", "--force").assert_error(2, "--resume")


@pytest.mark.parametrize("extra, needle", [
    (["--config", "{not json"], "not valid JSON"),
    (["--config", "missing.json"], "neither a JSON object nor an existing JSON file"),
    (["--precision", "fp64"], "--precision"),
    (["--ema-decay", "1.5"], "--ema-decay"),
])
def test_train_usage_errors(capsysbinary, extra, needle):
    args = ["train", "ddpm", "--out", "r", "--steps", "1", "--data", "synthetic:8", *extra]
    cli(capsysbinary, *args).assert_error(2, needle)
    assert not Path("r").exists()


def test_unknown_dataset(capsysbinary):
    cli(capsysbinary, "train", "ddpm", "--out", "r", "--steps", "1", "--data", "nowhere").assert_error(
        2, "unknown dataset 'nowhere'")


def test_ctrl_c_saves_and_says_how_to_resume(capsysbinary, monkeypatch, tmp_path, interactive_signals):
    import os
    import signal

    from gencli.models.diffusion.ddpm import DiffusionModel

    real = DiffusionModel.train_step

    def interrupt(self, batch, step, ctx):
        out = real(self, batch, step, ctx)
        if step == 1:  # a real Ctrl-C arriving while the second step runs
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(DiffusionModel, "train_step", interrupt)
    r = train(capsysbinary, "runs/cc", 5)
    line = r.assert_error(130, "interrupted at step 2; continue with: gencli train ddpm --out runs/cc --steps 5 --resume")
    assert line
    from gencli.checkpoints import read_metadata

    assert read_metadata(tmp_path / "runs" / "cc" / "model.safetensors")["step"] == 2


def test_nan_loss_is_one_line_exit_1(capsysbinary, monkeypatch):
    import torch

    from gencli.models.diffusion.ddpm import DiffusionModel

    def nan_step(self, batch, step, ctx):
        loss = self.unet.conv_in.weight.sum() * float("nan")
        ctx.step(loss, "unet")
        return {"loss": loss.detach()}

    monkeypatch.setattr(DiffusionModel, "train_step", nan_step)
    r = train(capsysbinary, "runs/nan", 3)
    r.assert_error(1, "loss became nan", "--lr")
    assert torch is not None


def test_keep_every_keeps_the_model_of_those_steps_and_force_removes_them(capsysbinary, tmp_path):
    from gencli.checkpoints import read_metadata

    run = tmp_path / "runs" / "kept"
    r = train(capsysbinary, "runs/kept", 4, "--keep-every", "2")
    assert r.code == 0, r.err
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["step-0000002.safetensors", "step-0000004.safetensors"]
    assert read_metadata(run / "checkpoints" / "step-0000002.safetensors")["step"] == 2
    assert (run / "checkpoints" / kept[-1]).read_bytes() == (run / "model.safetensors").read_bytes()
    r = train(capsysbinary, "runs/kept", 6, "--resume")  # the resumed run keeps keeping
    assert r.code == 0, r.err
    assert len(list((run / "checkpoints").iterdir())) == 3
    (run / "state.safetensors").unlink()
    r = train(capsysbinary, "runs/kept", 2)
    assert r.code == 2 and "checkpoints/" in r.err  # leftovers are named, nothing is deleted unasked
    r = train(capsysbinary, "runs/kept", 2, "--force")
    assert r.code == 0, r.err
    assert not (run / "checkpoints").exists()


def test_init_starts_a_new_run_from_weights(capsysbinary, tmp_path):
    """--init: the run's network and EMA start as the given checkpoint's (its config kept, --config
    changing the rest), it is a new run (step 0, its own schedule), and what does not fit is refused."""
    import torch

    from gencli import registry
    from gencli.checkpoints import load_checkpoint, read_metadata
    from gencli.training import run as runs

    assert train(capsysbinary, "a", 3).code == 0
    shipped = load_checkpoint(tmp_path / "a" / "model.safetensors").tensors
    prepared = runs.prepare(registry.get_family("ddpm"), tmp_path / "b", steps=2, data="synthetic:24",
                            init="a", config={"optimizer": {"lr": 5e-4}}, train={"batch_size": 8})
    net, ema = prepared.model.state_dict(), prepared.trainer.ema.shadow.state_dict()
    assert set(net) == set(shipped) and prepared.trainer.step == 0
    for k, v in shipped.items():
        assert torch.equal(net[k], v.to(net[k].dtype)), k
        assert torch.equal(ema[k.removeprefix("unet.")], v.to(net[k].dtype)), k
    cfg = prepared.model.config
    assert cfg["unet"] == read_metadata(tmp_path / "a" / "model.safetensors")["config"]["unet"]
    assert cfg["optimizer"]["lr"] == 5e-4 and cfg["optimizer"]["betas"] == [0.9, 0.999]
    assert prepared.metadata["init"] == "a"  # where the weights were read

    r = cli(capsysbinary, "train", "ddpm", "--out", "b", "--steps", "2", "--init", "a", "--data", "synthetic:24",
            "--batch-size", "8", "--sample-n", "0")
    assert r.code == 0, r.err
    assert read_metadata(tmp_path / "b" / "model.safetensors")["step"] == 2

    base = ["train", "ddpm", "--out", "c", "--steps", "1", "--data", "synthetic:24", "--init", "a"]
    cli(capsysbinary, *base, "--image-size", "16").assert_error(2, "--image-size 16 disagrees with --init")
    cli(capsysbinary, *base, "--unconditional").assert_error(
        2, "is conditional on 2 classes, the data has no labels")
    cli(capsysbinary, *base, "--config", '{"unet": {"block_out_channels": [8, 8]}}').assert_error(
        2, "does not fit the run's network")
    cli(capsysbinary, *base, "--resume").assert_error(2, "pass only one")
    cli(capsysbinary, *base[:-1], "nowhere.safetensors").assert_error(1, "cannot resolve weights 'nowhere.safetensors'")
    assert not Path("c").exists()


def test_init_from_a_generator_only_checkpoint_trains_a_fresh_discriminator(capsysbinary):
    from gencli.checkpoints import read_metadata

    tiny = json.dumps({"generator": {"width": 8, "init": "default"}, "discriminator": {"width": 4}, "z_dim": 8})
    base = ["train", "dcgan", "--data", "synthetic:16", "--image-size", "28", "--steps", "1", "--batch-size", "8",
            "--sample-n", "0", "--config", tiny]
    assert cli(capsysbinary, *base, "--out", "g").code == 0
    r = cli(capsysbinary, *base, "--out", "g2", "--init", "g", "--steps", "2")
    assert r.code == 0, r.err
    assert "ships no weights for D; it starts from a fresh initialisation" in r.err
    assert read_metadata(Path("g2") / "model.safetensors")["step"] == 2
