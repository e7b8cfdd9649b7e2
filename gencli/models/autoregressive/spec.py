"""The autoregressive family as the registry sees it (torch-free): pixelcnn."""

from gencli.models.spec import Checkpoint, FamilySpec, Option

PIXELCNN = FamilySpec(
    name="pixelcnn",
    target="gencli.models.autoregressive.pixelcnn:PixelCNN",
    description="Gated PixelCNN (van den Oord et al. 2016), 256-way softmax or logistic mixture, exact likelihood",
    capabilities=("sample", "log_likelihood"),
    data="images",
    options={"sample": (Option("temperature", "float", "Softmax temperature (categorical) or logistic scale "
                               "factor [default: 1].", minimum=0.01, maximum=10),)},
    checkpoints=(Checkpoint("fashion-mnist", "bundled:pixelcnn-fashion-mnist.safetensors",
                            "Fashion-MNIST 28x28, 256-way softmax, trained by gencli (bundled)",
                            dataset="fashion-mnist"),),
    default_checkpoint="fashion-mnist",
    tiny_config={"hidden": 8, "layers": 2, "kernel": 3, "first_kernel": 3, "head": 8},
    tiny_train={"data": "synthetic:8", "image_size": 8},
)

SPECS = (PIXELCNN,)
