import json
import os
import signal

import pytest
import torch

from gencli.checkpoints import load_checkpoint, read_metadata
from gencli.io.synthetic import synthetic_shapes
from gencli.models.diffusion.ddpm import DiffusionModel
from gencli.training.step import NonFiniteLoss
from gencli.training.trainer import MODEL_FILE, STATE_FILE, TrainConfig, Trainer
from tiny import tiny_ddpm_config


@pytest.fixture(scope="module")
def data():
    return synthetic_shapes(48, size=16, channels=1, seed=0, num_classes=2)


def make(run_dir, data, steps, model=None, **kw):
    torch.manual_seed(1234)  # model init; the trainer seeds everything else itself
    model = model or DiffusionModel(tiny_ddpm_config())
    cfg = TrainConfig(steps=steps, batch_size=16, log_every=2, save_every=4, **kw)
    return Trainer(model, data, run_dir, cfg)


def test_resume_continues_the_same_run(tmp_path, data):
    straight = make(tmp_path / "a", data, 10)
    straight.fit()
    first = make(tmp_path / "b", data, 6)
    first.fit()
    resumed = make(tmp_path / "b", data, 10)
    resumed.load()
    assert resumed.step == 6
    resumed.fit()
    a, b = straight.inference_state_dict(), resumed.inference_state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # optimiser moments too, not only weights
    sa = straight.optimizers["unet"].state_dict()["state"]
    sb = resumed.optimizers["unet"].state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    steps = [json.loads(l)["step"] for l in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 10


def test_checkpoint_is_loadable_and_holds_ema(tmp_path, data):
    t = make(tmp_path, data, 8, ema_decay=0.9)
    t.fit()
    ck = load_checkpoint(tmp_path / MODEL_FILE)
    assert ck.family == "ddpm" and ck.metadata["step"] == 8
    model = DiffusionModel.from_config(ck.config)
    model.load_state_dict(ck.tensors)
    raw = t.model.state_dict()
    ema_key = "unet.conv_in.weight"
    assert torch.equal(ck.tensors[ema_key], t.ema.shadow.state_dict()["conv_in.weight"])
    assert not torch.equal(ck.tensors[ema_key], raw[ema_key])


class _Exploding(DiffusionModel):
    explode_at = 6

    def train_step(self, batch, step, ctx):
        out = super().train_step(batch, step, ctx)
        if step + 1 >= self.explode_at:
            ctx.step(torch.tensor(float("nan"), requires_grad=True), "unet")
        return out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data):
    model = _Exploding(tiny_ddpm_config())
    t = make(tmp_path, data, 20, model=model)
    with pytest.raises(NonFiniteLoss) as exc:
        t.fit()
    msg = str(exc.value)
    assert "nan" in msg and "step 4" in msg and "\n" not in msg
    assert read_metadata(tmp_path / MODEL_FILE)["step"] == 4  # the save at step 4 is intact
    again = make(tmp_path, data, 20)
    again.load()
    assert again.step == 4


def test_an_ignored_sigint_stays_ignored(tmp_path, data):
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        model = _Signalled(tiny_ddpm_config())
        t = make(tmp_path, data, 4, model=model)
        assert t.fit() == 4  # the SIGINT sent at step 2 was ignored, as the shell asked
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, saved)


class _Signalled(DiffusionModel):
    """Sends itself SIGINT (a Ctrl-C) or SIGTERM in the middle of a step."""

    signals: tuple = (signal.SIGINT,)

    def train_step(self, batch, step, ctx):
        out = super().train_step(batch, step, ctx)
        if step == 2:
            for sig in self.signals:
                os.kill(os.getpid(), sig)
        return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_after_the_step_in_progress(tmp_path, data, sig, interactive_signals):
    model = _Signalled(tiny_ddpm_config())
    model.signals = (sig,)
    t = make(tmp_path, data, 20, model=model)
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    assert t.stop_signal == sig
    again = make(tmp_path, data, 5)
    again.load()
    assert again.step == 3  # the step that was running when the signal came was completed
    again.fit()
    assert read_metadata(tmp_path / MODEL_FILE)["step"] == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_second_signal_stops_at_once_without_saving_a_half_step(tmp_path, data, interactive_signals):
    model = _Signalled(tiny_ddpm_config())
    model.signals = (signal.SIGINT, signal.SIGINT)
    t = make(tmp_path, data, 20, model=model)
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    assert not (tmp_path / STATE_FILE).exists()  # nothing periodic yet, nothing half-done saved


def test_warmup_lr_is_applied(tmp_path, data):
    model = DiffusionModel(tiny_ddpm_config(optimizer={"lr": 1e-3, "betas": [0.9, 0.999], "warmup_steps": 10}))
    t = make(tmp_path, data, 3, model=model)
    t.fit()
    lrs = [json.loads(l)["lr"] for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lrs[0] == pytest.approx(2e-4)  # step index 1 -> (1+1)/10 * 1e-3


def test_training_reduces_the_loss(tmp_path, data):
    # plain MSE on epsilon, whose scale does not depend on the weighting (the default, Min-SNR
    # weighted v-prediction, starts lower and falls less in 40 steps)
    torch.manual_seed(1234)
    model = DiffusionModel(tiny_ddpm_config(scheduler={"prediction_type": "epsilon"}, min_snr_gamma=None))
    t = make(tmp_path, data, 40, model=model, ema_decay=None)
    t.cfg.log_every = 10
    t.fit()
    losses = [json.loads(l)["loss"] for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.6 * losses[0]
