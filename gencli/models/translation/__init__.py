"""Image-to-image translation: CycleGAN (unpaired) and pix2pix (paired), as in the official
pytorch-CycleGAN-and-pix2pix, with its generators loadable from the official ``.pth`` files."""
