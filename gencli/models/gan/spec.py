"""The adversarial families as the registry sees them (torch-free): gan, dcgan, cgan, acgan,
wgan, wgan-gp, lsgan, sngan, dragan, infogan and stylegan.

All but stylegan are one configurable class (:mod:`.adversarial`) with each paper's defaults; the
training tricks are train options of every one of them (off unless given).
"""

from gencli.models.spec import Checkpoint, FamilySpec, Option

_LOSSES = ("vanilla", "minimax", "lsgan", "wgan", "hinge")

TRAIN_OPTIONS = (
    Option("loss", "str", "Adversarial loss (vanilla = non-saturating G loss) [default: the family's].",
           choices=_LOSSES),
    Option("n_critic", "int", "D (critic) steps per G step; --steps counts D steps [default: the family's].",
           minimum=1),
    Option("lr_d", "float", "D learning rate (TTUR when it differs from --lr) [default: the family's].",
           minimum=0),
    Option("penalty_weight", "float", "Weight of the family's gradient penalty (gp, dragan, r1) [default: 10].",
           minimum=0),
    Option("label_smoothing", "float", "One-sided label smoothing: real targets 1 - X (vanilla, lsgan) [default: 0].",
           minimum=0, maximum=0.5),
    Option("instance_noise", "float", "Std of Gaussian noise on D's inputs [default: 0].", minimum=0),
    Option("instance_noise_steps", "int", "Decay the instance noise linearly to 0 over N steps (0: constant).",
           minimum=0),
    Option("augment", "str", "DiffAugment policy for reals and fakes, a comma list of color, translation, cutout."),
)
_TRUNCATION = Option("truncation", "float", "Truncation psi: Gaussian z values beyond +-X are redrawn "
                     "(uniform z is scaled by X; stylegan: w = w_avg + X (w - w_avg)) [default: none].", minimum=0)
_ARITHMETIC = Option("arithmetic", "str", "Latent arithmetic of seed-group means, e.g. '1,2,3 - 4,5,6 + 7,8,9': "
                     "writes each group's mean image and the result (--seeds/--frames unused).")

_TINY_CONV = {"generator": {"width": 4}, "discriminator": {"width": 4}, "z_dim": 8}
_TINY_TRAIN = {"data": "synthetic:8", "image_size": 8}
_CAPS = ("sample", "interpolate", "decode")


def _bundled(name: str, what: str) -> tuple[Checkpoint, ...]:
    """The family's bundled Fashion-MNIST default (weights/NAME-fashion-mnist.safetensors)."""
    return (Checkpoint("fashion-mnist", f"bundled:{name}-fashion-mnist.safetensors",
                       f"{what} 28x28 Fashion-MNIST, trained by gencli (bundled)", dataset="fashion-mnist"),)


def _family(name: str, cls: str, description: str, *, data: str = "images", tiny: dict | None = None,
            interpolate: tuple = (), checkpoints: tuple = (), default: str | None = None,
            sample: tuple = (), caps: tuple = _CAPS, bundled: str | None = None) -> FamilySpec:
    if bundled:
        checkpoints, default = _bundled(name, bundled), "fashion-mnist"
    return FamilySpec(
        name=name, target=f"gencli.models.gan.{cls}", description=description, capabilities=caps, data=data,
        options={"sample": (_TRUNCATION, *sample), "interpolate": (_ARITHMETIC, *interpolate), "train": TRAIN_OPTIONS},
        checkpoints=checkpoints, default_checkpoint=default,
        tiny_config=tiny if tiny is not None else _TINY_CONV, tiny_train=_TINY_TRAIN)


SPECS = (
    _family("gan", "adversarial:GAN", "The original GAN (Goodfellow et al. 2014): MLPs, non-saturating G loss",
            tiny={"generator": {"width": 16}, "discriminator": {"width": 16}, "z_dim": 8},
            bundled="unconditional MLP"),
    _family("dcgan", "adversarial:DCGAN", "Deep convolutional GAN (Radford et al. 2015)",
            bundled="unconditional"),
    _family("cgan", "adversarial:CGAN", "Conditional GAN (Mirza & Osindero 2014), DCGAN networks",
            data="labelled images", bundled="class-conditional (projection discriminator)"),
    _family("acgan", "adversarial:ACGAN", "Auxiliary-classifier GAN (Odena et al. 2017), DCGAN networks",
            data="labelled images", bundled="class-conditional"),
    _family("wgan", "adversarial:WGAN", "Wasserstein GAN (Arjovsky et al. 2017): weight clipping, RMSprop, n_critic 5",
            bundled="unconditional"),
    _family("wgan-gp", "adversarial:WGANGP", "WGAN with gradient penalty (Gulrajani et al. 2017), lambda 10",
            bundled="unconditional"),
    _family("lsgan", "adversarial:LSGAN", "Least-squares GAN (Mao et al. 2017)", bundled="unconditional"),
    _family("sngan", "adversarial:SNGAN", "Spectral normalisation in D + hinge loss (Miyato et al. 2018)",
            bundled="unconditional"),
    _family("dragan", "adversarial:DRAGAN", "DRAGAN (Kodali et al. 2017): gradient penalty around the data",
            bundled="unconditional"),
    _family("infogan", "infogan:InfoGAN", "InfoGAN (Chen et al. 2016): categorical and continuous latent codes",
            caps=(*_CAPS, "traverse"), bundled="unconditional, 10-way + 2 continuous codes",
            interpolate=(Option("traverse_code", "str", "Write a grid varying one code per row (c1 categorical, "
                                "c2.. continuous over -2..2 in --frames steps), one row per seed."),)),
    _family("stylegan", "stylegan:StyleGAN", "A compact style-based generator (after Karras et al. 2019/2020): "
            "mapping z -> w, modulated convolutions, noise, style mixing, truncation in w, R1, EMA",
            tiny={"generator": {"width": 4, "w_dim": 8}, "discriminator": {"width": 4}, "z_dim": 8},
            bundled="unconditional style-based",
            sample=(Option("mix", "str", "Write a style-mixing grid ROWSEEDS:COLSEEDS (e.g. 1,2,3:4,5,6): "
                           "column seeds on top, row seeds on the left, mixes inside (-n and --seed unused)."),
                    Option("mix_layers", "str", "Which styles the column seeds give in --mix [default: coarse].",
                           choices=("coarse", "middle", "fine"))),
            interpolate=(Option("space", "str", "Interpolate in z (slerp) or w (lerp) [default: z].",
                                choices=("z", "w")),
                         _TRUNCATION)),
)
