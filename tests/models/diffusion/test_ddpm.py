import pytest
import torch

from gencli import registry
from gencli.checkpoints import save_checkpoint
from gencli.errors import InputError, CapabilityError, UsageError
from gencli.models.diffusion.ddpm import DiffusionModel
from tiny import tiny_ddpm_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DiffusionModel(tiny_ddpm_config()).eval()


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_sample_shape_range_and_determinism(model):
    a = model.sample(3, gen(1), steps=5)
    b = model.sample(3, gen(1), steps=5)
    assert a.shape == (3, 1, 16, 16)
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, model.sample(3, gen(2), steps=5))


def test_ddim_eta0_is_deterministic_given_the_noise(model):
    x = model.prior(2, gen(3))
    a = model.sample(2, gen(10), sampler="ddim", steps=5, init_noise=x)
    b = model.sample(2, gen(99), sampler="ddim", steps=5, init_noise=x)
    assert torch.equal(a, b)


def test_class_labels_cycle_and_validate(model):
    assert model.class_labels(5, None, torch.device("cpu")).tolist() == [0, 1, 0, 1, 0]
    assert model.class_labels(3, 1, torch.device("cpu")).tolist() == [1, 1, 1]
    with pytest.raises(UsageError, match="out of range"):
        model.sample(2, gen(0), steps=2, class_labels=5)


def test_guidance_mixes_conditional_and_unconditional(model):
    x = model.prior(2, gen(4))
    labels = torch.tensor([0, 1])
    cond = model._denoise(x, 500, labels, 1.0)
    uncond = model._denoise(x, 500, torch.full_like(labels, model.null_class), 1.0)
    guided = model._denoise(x, 500, labels, 3.0)
    torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond), rtol=1e-5, atol=1e-5)


def test_guided_ddim_rederives_eps_from_the_clipped_x0(model, monkeypatch):
    """Guided eps overshoots; with the clipped x0 and the raw eps DDIM drifts off the data (the
    bundled model's samples turn to noise at --guidance 2), so guided DDIM uses the clipped eps."""
    from gencli.models.diffusion import ddpm, schedulers

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("clipped_eps", False))
        return schedulers.DDIMSampler(*args, **kwargs)

    monkeypatch.setitem(ddpm.SAMPLERS, "ddim", spy)
    model.sample(2, torch.Generator().manual_seed(0), sampler="ddim", steps=2, guidance=1.0)
    model.sample(2, torch.Generator().manual_seed(0), sampler="ddim", steps=2, guidance=2.0)
    assert seen == [False, True]


def test_unconditional_model_rejects_classes():
    m = DiffusionModel(tiny_ddpm_config(num_classes=None)).eval()
    assert m.num_classes is None
    with pytest.raises(UsageError, match="not class-conditional"):
        m.sample(1, gen(0), steps=2, class_labels=1)


def test_init_noise_shape_is_checked(model):
    with pytest.raises(InputError, match="initial noise has shape"):
        model.sample(1, None, steps=2, init_noise=torch.zeros(1, 3, 16, 16))


def test_interpolation_endpoints_are_the_seeds_samples(model):
    frames = model.interpolate(4, [gen(5), gen(6)], steps=5, class_labels=1)
    assert frames.shape == (4, 1, 16, 16)
    start = model.sample(1, None, sampler="ddim", steps=5, eta=0.0, class_labels=1,
                         init_noise=model.prior(1, gen(5)))
    end = model.sample(1, None, sampler="ddim", steps=5, eta=0.0, class_labels=1,
                       init_noise=model.prior(1, gen(6)))
    # same noise and steps; only the batch size differs (float summation order)
    torch.testing.assert_close(frames[0], start[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(frames[-1], end[0], atol=1e-4, rtol=0)


def test_conditional_interpolation_keeps_one_class(model, monkeypatch):
    seen = []
    orig = model.class_labels
    monkeypatch.setattr(model, "class_labels", lambda n, c=None, d=None: seen.append(c) or orig(n, c, d))
    model.interpolate(3, [gen(5), gen(6)], steps=2)
    assert isinstance(seen[0], int) and 0 <= seen[0] < 2


def test_v_prediction_and_cosine_schedule_train_and_sample():
    cfg = tiny_ddpm_config(scheduler={"prediction_type": "v_prediction", "beta_schedule": "cosine"})
    m = DiffusionModel(cfg).eval()
    assert m.schedule.prediction_type == "v_prediction"
    assert m.sample(1, gen(0), steps=3).shape == (1, 1, 16, 16)


def test_registry_capabilities_match_the_classes():
    for name, spec in registry.FAMILIES.items():
        implemented = spec.load_class().capabilities()
        for cap in spec.capabilities:
            assert cap in implemented, f"{name} declares {cap} but does not implement it"


def test_capability_errors_name_the_families_that_can():
    with pytest.raises(CapabilityError, match="ddpm cannot translate"):
        registry.require_capability("ddpm", "translate")
    with pytest.raises(UsageError, match="unknown model"):
        registry.get_family("nope")


def test_load_model_from_a_gencli_checkpoint(tmp_path, model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model.state_dict(), {"family": "ddpm", "config": model.config})
    loaded, meta = registry.load_model("ddpm", weights=str(path))
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    # ddim shares ddpm checkpoints
    registry.load_model("ddim", weights=str(path))
    # a folder holding model.safetensors (a run folder) works too
    (tmp_path / "run").mkdir()
    path.rename(tmp_path / "run" / "model.safetensors")
    registry.load_model("ddpm", weights=str(tmp_path / "run"))


def test_load_model_rejects_another_family(tmp_path, model):
    from gencli.errors import InputError

    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model.state_dict(), {"family": "cyclegan", "config": {}})
    with pytest.raises(InputError, match="cyclegan"):
        registry.load_model("ddpm", weights=str(path))


def test_interpolation_through_three_seeds_gives_the_asked_frame_count(model):
    for frames in (2, 5, 7):
        assert model.interpolate(frames, [gen(1), gen(2), gen(3)], steps=2).shape[0] == frames


def test_outputs_get_normal_file_permissions(tmp_path, model):
    import os

    from gencli.checkpoints import save_checkpoint as save
    from gencli.io.writers import write_images

    mask = os.umask(0o022)
    try:
        save(tmp_path / "m.safetensors", model.state_dict(), {"family": "ddpm", "config": model.config})
        write_images(torch.zeros(1, 1, 4, 4), str(tmp_path / "x.png"))
    finally:
        os.umask(mask)
    for name in ("m.safetensors", "x.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
