"""The flow family as the registry sees it (torch-free): glow."""

from gencli.models.spec import Checkpoint, FamilySpec, Option

_TEMPERATURE = Option("temperature", "float", "Scale of the latents' standard deviations "
                      "[default: the checkpoint's, 0.7].", minimum=0, maximum=10)

GLOW = FamilySpec(
    name="glow",
    target="gencli.models.flows.glow:Glow",
    description="Glow (Kingma & Dhariwal 2018): multi-scale flow, actnorm, invertible 1x1 convs, affine coupling",
    capabilities=("sample", "interpolate", "encode", "decode", "log_likelihood"),
    data="images",
    options={"sample": (_TEMPERATURE,), "interpolate": (_TEMPERATURE,)},
    checkpoints=(Checkpoint("fashion-mnist", "bundled:glow-fashion-mnist.safetensors",
                            "Fashion-MNIST 28x28, 2 levels x 16 steps, trained by gencli (bundled)",
                            dataset="fashion-mnist"),),
    default_checkpoint="fashion-mnist",
    tiny_config={"levels": 2, "steps": 1, "hidden": 8},
    tiny_train={"data": "synthetic:8", "image_size": 8},
)

SPECS = (GLOW,)
