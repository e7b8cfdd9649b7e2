"""What GANs share, and image-to-image translation with them: the adversarial losses and
penalties (:mod:`.losses`), the PatchGAN discriminators (:mod:`.discriminators`), the pool of past
fakes (:mod:`.pool`) and the norm layers and weight init of the official
pytorch-CycleGAN-and-pix2pix (:mod:`.norms`). Losses are small pure functions that know no
network, as a diffusion scheduler knows no UNet."""
