"""Min-SNR-gamma loss weighting (Hang et al. 2023) for DDPM training."""

from __future__ import annotations

import pytest
import torch

from gencli.models.diffusion.schedulers import NoiseSchedule


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_weights_are_min_snr_gamma_moved_to_the_target(prediction):
    s = NoiseSchedule(prediction_type=prediction)
    t = torch.tensor([0, 10, 100, 500, 999])
    w = s.loss_weights(t, 5.0).double()
    for ti, wi in zip(t.tolist(), w.tolist()):
        a = float(s.alphas_cumprod[ti])
        snr = a / (1 - a)
        x0_weight = min(snr, 5.0)
        expected = {"epsilon": x0_weight / snr, "v_prediction": x0_weight / (snr + 1), "sample": x0_weight}[prediction]
        assert wi == pytest.approx(expected, rel=1e-6)
    assert s.loss_weights(t, None) is None and s.loss_weights(t, 0) is None
    if prediction == "epsilon":  # low noise (high SNR) is down-weighted, high noise keeps weight 1
        assert w[0] < 0.01 and w[-1] == pytest.approx(1.0)


def test_ddpm_training_loss_uses_the_weights():
    from gencli import registry
    from gencli.models.gan import toy

    spec = registry.get_family("ddpm")
    cls = spec.load_class()
    torch.manual_seed(0)
    model = cls.from_config(cls.config_for_data(8, 1, None, {**spec.tiny_config, "min_snr_gamma": 5.0,
                                                           "scheduler": {"prediction_type": "epsilon"}}))
    ctx = toy._Ctx(model.configure_optimizers())
    draws = {}

    def remember(name, fn):
        def wrapped(*a, **k):
            draws[name] = fn(*a, **k)
            return draws[name]
        return wrapped

    ctx.randint = remember("t", lambda *a, **k: torch.tensor([3, 50, 400, 900]))  # low and high noise
    ctx.randn_like = remember("noise", ctx.randn_like)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        ref_model = type(model).from_config(model.config)
        ref_model.load_state_dict(model.state_dict())
    loss = float(model.train_step((x, torch.zeros(4, dtype=torch.long)), 0, ctx)["loss"])
    t, noise = draws["t"], draws["noise"]
    with torch.no_grad():
        out = ref_model.unet(ref_model.schedule.add_noise(x, noise, t), t, None)
        per = (out - noise).square().flatten(1).mean(1)
    w = ref_model.schedule.loss_weights(t, 5.0)
    assert loss == pytest.approx(float((w * per).mean()), rel=1e-5)
    assert loss != pytest.approx(float(per.mean()), rel=1e-3)  # the weighting changes the loss
