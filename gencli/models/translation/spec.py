"""The translation families as the registry sees them (torch-free): cyclegan and pix2pix.

The official pretrained generators of junyanz/pytorch-CycleGAN-and-pix2pix exist only as .pth
files on the authors' site (no Hub mirror): their checkpoints have the ``cyclegan-pth`` /
``pix2pix-pth`` formats, downloaded once and converted into gencli's cache. sha256 None: these
files could not be fetched where this table was written (no network); pinning them needs one
networked run (the converted file's metadata records the sha256 it saw).
"""

from gencli.models.spec import Checkpoint, FamilySpec, Option

_DIRECTION = Option("direction", "str", "AtoB or BtoA (checkpoints holding both generators) [default: AtoB].",
                    choices=("AtoB", "BtoA"))
TRANSLATE_OPTIONS = (
    _DIRECTION,
    Option("size", "int", "Resize inputs to N x N first (the outputs then have that size).", minimum=1),
    Option("tile", "int", "Translate large images in overlapping tiles of N x N pixels.", minimum=1),
    Option("overlap", "int", "Tile overlap in pixels [default: tile/4].", minimum=0),
)
EXPORT_OPTIONS = (
    Option("direction", "str", "The generator to export: AtoB or BtoA (checkpoints holding both) [default: AtoB].",
           choices=("AtoB", "BtoA")),
)
TRAIN_OPTIONS = (
    Option("data_a", "str", "Domain A images (cyclegan), or the A folder of pairs matched by name (pix2pix)."),
    Option("data_b", "str", "Domain B images, or the B folder of pairs."),
    Option("direction", "str", "AtoB (default) or BtoA swaps the domains.", choices=("AtoB", "BtoA")),
    Option("flip", "bool", "Random horizontal flips."),
)

_CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{}.pth"
_PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{}.pth"
_CYCLEGAN_OFFICIAL = (  # name, dataset, description (all resnet_9blocks, instance norm, RGB, one direction)
    ("horse2zebra", "horse2zebra", "horse -> zebra (ImageNet), official CycleGAN"),
    ("zebra2horse", "horse2zebra", "zebra -> horse (ImageNet), official CycleGAN"),
    ("monet2photo", "monet2photo", "Monet painting -> photo, official CycleGAN"),
    ("style_monet", "monet2photo", "photo -> Monet style, official CycleGAN"),
    ("style_cezanne", "cezanne2photo", "photo -> Cezanne style, official CycleGAN"),
    ("style_ukiyoe", "ukiyoe2photo", "photo -> Ukiyo-e style, official CycleGAN"),
    ("style_vangogh", "vangogh2photo", "photo -> Van Gogh style, official CycleGAN"),
    ("summer2winter_yosemite", "summer2winter_yosemite", "Yosemite summer -> winter, official CycleGAN"),
    ("winter2summer_yosemite", "summer2winter_yosemite", "Yosemite winter -> summer, official CycleGAN"),
    ("apple2orange", "apple2orange", "apple -> orange (ImageNet), official CycleGAN"),
    ("orange2apple", "apple2orange", "orange -> apple (ImageNet), official CycleGAN"),
    ("map2sat", "maps", "Google map -> aerial photo, official CycleGAN"),
    ("sat2map", "maps", "aerial photo -> Google map, official CycleGAN"),
    ("cityscapes_photo2label", "cityscapes", "street photo -> Cityscapes label colours, official CycleGAN"),
    ("cityscapes_label2photo", "cityscapes", "Cityscapes label colours -> street photo, official CycleGAN"),
    ("facades_photo2label", "facades", "facade photo -> CMP label colours, official CycleGAN"),
    ("facades_label2photo", "facades", "CMP label colours -> facade photo, official CycleGAN"),
    ("iphone2dslr_flower", "iphone2dslr_flower", "iPhone flower photo -> DSLR shallow depth of field, official CycleGAN"),
)
_PIX2PIX_OFFICIAL = (  # all unet_256, batch norm, dropout kept at test time (as the official test.py)
    ("edges2shoes", "edges2shoes", "edge map -> shoe photo (UT Zappos50K), official pix2pix"),
    ("sat2map", "maps", "aerial photo -> Google map, official pix2pix"),
    ("map2sat", "maps", "Google map -> aerial photo, official pix2pix"),
    ("facades_label2photo", "facades", "CMP label colours -> facade photo, official pix2pix"),
    ("day2night", "day2night", "daytime -> night scene (Transient Attributes), official pix2pix"),
)

_TINY_GENERATOR = {"arch": "resnet", "n_blocks": 1, "ngf": 4}
_TINY_DISCRIMINATOR = {"arch": "n_layers", "n_layers": 1, "ndf": 4}

CYCLEGAN = FamilySpec(
    name="cyclegan",
    target="gencli.models.translation.cyclegan:CycleGAN",
    description="Unpaired image-to-image translation (Zhu et al. 2017), official generators",
    capabilities=("translate", "export_onnx"),
    data="unpaired",
    options={"translate": TRANSLATE_OPTIONS, "train": TRAIN_OPTIONS, "export": EXPORT_OPTIONS},
    checkpoints=(
        Checkpoint("sneaker2boot", "bundled:cyclegan-sneaker2boot.safetensors",
                   "Fashion-MNIST sneaker <-> ankle boot, both directions, trained by gencli (bundled)",
                   dataset="fashion-mnist"),
        *(Checkpoint(n, "url:" + _CYCLEGAN_URL.format(n), d, format="cyclegan-pth", dataset=ds)
          for n, ds, d in _CYCLEGAN_OFFICIAL),
    ),
    default_checkpoint="sneaker2boot",
    tiny_config={"generator": _TINY_GENERATOR, "discriminator": _TINY_DISCRIMINATOR, "pool_size": 2},
    tiny_train={"data_a": "synthetic:4", "data_b": "synthetic:4", "image_size": 8},
)

PIX2PIX = FamilySpec(
    name="pix2pix",
    target="gencli.models.translation.pix2pix:Pix2Pix",
    description="Paired image-to-image translation (Isola et al. 2017), official generators",
    capabilities=("translate", "export_onnx"),
    data="paired",
    options={"translate": TRANSLATE_OPTIONS, "train": TRAIN_OPTIONS, "export": EXPORT_OPTIONS},
    checkpoints=(
        Checkpoint("edges2fashion", "bundled:pix2pix-edges2fashion.safetensors",
                   "Fashion-MNIST edge map -> image, trained by gencli (bundled)", dataset="fashion-mnist"),
        *(Checkpoint(n, "url:" + _PIX2PIX_URL.format(n), d, format="pix2pix-pth", dataset=ds)
          for n, ds, d in _PIX2PIX_OFFICIAL),
    ),
    default_checkpoint="edges2fashion",
    tiny_config={"generator": {"arch": "unet", "num_downs": 5, "ngf": 2}, "discriminator": _TINY_DISCRIMINATOR},
    tiny_train={"data": "edges:synthetic:4", "image_size": 32},
)

SPECS = (CYCLEGAN, PIX2PIX)
