"""The diffusion family as the registry sees it (torch-free): ddpm, and ddim as its preset."""

from gencli.models.spec import Checkpoint, FamilySpec, Option, Preset

_STEPS = Option("steps", "int", "Sampling steps [default: the checkpoint's, 50 for a sampler it was not set up for].",
                minimum=1)
_GUIDANCE = Option("guidance", "float", "Classifier-free guidance weight (1 = plain conditional) "
                   "[default: the checkpoint's].", minimum=0)

SAMPLE_OPTIONS = (
    _STEPS,
    Option("sampler", "str", "ddpm (ancestral) or ddim [default: the checkpoint's].", choices=("ddpm", "ddim")),
    Option("eta", "float", "DDIM stochasticity (0 deterministic, 1 DDPM-like); ddim sampling only.",
           minimum=0, maximum=1),
    Option("spacing", "str", "Timestep spacing [default: the checkpoint's].",
           choices=("leading", "trailing", "linspace")),
    Option("variance", "str", "DDPM posterior variance; ddpm sampling only [default: the checkpoint's].",
           choices=("fixed_small", "fixed_large")),
    _GUIDANCE,
)
INTERPOLATE_OPTIONS = (
    Option("steps", "int", "DDIM steps per frame (deterministic, eta 0) [default: 50].", minimum=1),
    _GUIDANCE,
)

CHECKPOINTS = (
    Checkpoint("fashion-mnist", "bundled:ddpm-fashion-mnist.safetensors",
               "class-conditional 28x28 Fashion-MNIST, trained by gencli (bundled)", dataset="fashion-mnist"),
    Checkpoint("cifar10", "hf:google/ddpm-cifar10-32", "Ho et al. 2020, CIFAR-10 32x32",
               format="diffusers", dataset="cifar10"),
    Checkpoint("celebahq", "hf:google/ddpm-celebahq-256", "Ho et al. 2020, CelebA-HQ 256x256",
               format="diffusers", dataset="celebahq"),
    Checkpoint("church", "hf:google/ddpm-church-256", "Ho et al. 2020, LSUN church 256x256",
               format="diffusers", dataset="lsun-church"),
    Checkpoint("bedroom", "hf:google/ddpm-bedroom-256", "Ho et al. 2020, LSUN bedroom 256x256",
               format="diffusers", dataset="lsun-bedroom"),
    Checkpoint("cat", "hf:google/ddpm-cat-256", "Ho et al. 2020, LSUN cat 256x256",
               format="diffusers", dataset="lsun-cat"),
)

DDPM = FamilySpec(
    name="ddpm",
    target="gencli.models.diffusion.ddpm:DiffusionModel",
    description="Denoising diffusion (Ho et al. 2020), ancestral DDPM sampling",
    capabilities=("sample", "interpolate", "decode", "export_onnx"),
    data="images",
    options={"sample": SAMPLE_OPTIONS, "interpolate": INTERPOLATE_OPTIONS},
    checkpoints=CHECKPOINTS,
    default_checkpoint="fashion-mnist",
    presets=(Preset("ddim", "The same diffusion models sampled with DDIM (Song et al. 2021), 50 steps, eta 0",
                    {"sample": {"sampler": "ddim", "steps": 50}}),),
    tiny_config={"unet": {"block_out_channels": [16, 32], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                          "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8},
                 "sampling": {"sampler": "ddim", "steps": 4}},
    tiny_train={"data": "synthetic:8", "image_size": 8},
)

SPECS = (DDPM,)
