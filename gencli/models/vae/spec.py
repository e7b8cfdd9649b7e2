"""The autoencoder families as the registry sees them (torch-free): ae, dae, vae, beta-vae."""

from gencli.models.spec import Checkpoint, FamilySpec, Option

_TINY = {"hidden": [4, 8], "dense": 16, "latent_dim": 3, "iwae_samples": 2}
_TINY_TRAIN = {"data": "synthetic:8", "image_size": 8}

_TEMPERATURE = Option("temperature", "float", "Scale of the prior's standard deviation (1 = the prior).",
                      minimum=0, maximum=10)
_IWAE = (Option("samples", "int", "Importance samples K of the IWAE bound (1 = the ELBO) "
                "[default: the checkpoint's, 64].", minimum=1, maximum=100000),)
_TRAVERSE = (Option("span", "float", "--traverse: sweep each latent over [-span, span] [default: 3].",
                    minimum=0),
             Option("dims", "int", "--traverse: only the first N latent dimensions (rows).", minimum=1))

AE = FamilySpec(
    name="ae",
    target="gencli.models.vae.model:AutoEncoder",
    description="Convolutional autoencoder (conv 32 -> conv 64 -> dense latent), MSE or BCE; translate reconstructs",
    capabilities=("encode", "decode", "translate"),
    data="images",
    tiny_config=_TINY,
    tiny_train=_TINY_TRAIN,
)

DAE = FamilySpec(
    name="dae",
    target="gencli.models.vae.model:DenoisingAutoEncoder",
    description="Denoising autoencoder (Gaussian or masking noise); translate denoises",
    capabilities=("encode", "decode", "translate"),
    data="images",
    options={"translate": (
        Option("add_noise", "bool", "Corrupt the inputs with the training noise first (to denoise clean images)."),
        Option("noise_level", "float", "Noise level when corrupting (std, or masked fraction) "
               "[default: the checkpoint's].", minimum=0, maximum=2),
    )},
    tiny_config=_TINY,
    tiny_train=_TINY_TRAIN,
)

VAE = FamilySpec(
    name="vae",
    target="gencli.models.vae.model:VAE",
    description="Variational autoencoder (Kingma & Welling 2014), discretised-logistic decoder, IWAE bound",
    capabilities=("sample", "interpolate", "encode", "decode", "translate", "log_likelihood", "traverse"),
    data="images",
    options={"sample": (_TEMPERATURE,), "interpolate": _TRAVERSE, "log_likelihood": _IWAE},
    checkpoints=(Checkpoint("fashion-mnist", "bundled:vae-fashion-mnist.safetensors",
                            "Fashion-MNIST 28x28, 32-d latent, trained by gencli (bundled)",
                            dataset="fashion-mnist"),),
    default_checkpoint="fashion-mnist",
    tiny_config=_TINY,
    tiny_train=_TINY_TRAIN,
)

BETA_VAE = FamilySpec(
    name="beta-vae",
    target="gencli.models.vae.model:BetaVAE",
    description="beta-VAE (Higgins et al. 2017): beta = 4 with a KL warm-up, 10-d latent, for traversals",
    capabilities=("sample", "interpolate", "encode", "decode", "translate", "log_likelihood", "traverse"),
    data="images",
    options={"sample": (_TEMPERATURE,), "interpolate": _TRAVERSE, "log_likelihood": _IWAE},
    checkpoints=(Checkpoint("fashion-mnist", "bundled:beta-vae-fashion-mnist.safetensors",
                            "Fashion-MNIST 28x28, beta 4, 10-d latent, trained by gencli (bundled)",
                            dataset="fashion-mnist"),),
    default_checkpoint="fashion-mnist",
    tiny_config={**_TINY, "kl_warmup_steps": 2},
    tiny_train=_TINY_TRAIN,
)

VQVAE = FamilySpec(
    name="vqvae",
    target="gencli.models.vae.vqvae:VQVAE",
    description="VQ-VAE (van den Oord et al. 2017), EMA codebook + dead-code restarts, gated PixelCNN prior over codes",
    capabilities=("sample", "translate"),
    data="images",
    options={"sample": (Option("temperature", "float", "Softmax temperature of the prior over codes "
                               "[default: the checkpoint's, 1].", minimum=0.01, maximum=10),)},
    checkpoints=(Checkpoint("fashion-mnist", "bundled:vqvae-fashion-mnist.safetensors",
                            "Fashion-MNIST 28x28, 14x14 codes of 256, with its PixelCNN prior, trained by gencli "
                            "(bundled)", dataset="fashion-mnist"),),
    default_checkpoint="fashion-mnist",
    tiny_config={"hidden": [4, 8], "res_blocks": 1, "codebook_size": 8, "code_dim": 3,
                 "prior": {"hidden": 4, "layers": 2, "kernel": 3, "first_kernel": 3, "head": 4, "embed": 3}},
    tiny_train=_TINY_TRAIN,
)

SPECS = (AE, DAE, VAE, BETA_VAE, VQVAE)
