"""gencli.runtime: the malloc tuning every computing command applies (Linux/glibc only)."""

import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import resource, torch
    from gencli.runtime import tune_allocator
    from gencli.models.diffusion.ddpm import DiffusionModel
    from gencli.models.diffusion.unet import UNet2DModel
    from gencli.kernels import winograd
    # the blocked Winograd path, with its large scratch buffers: the fused kernels' own malloc and
    # free of their tile buffers raise glibc's dynamic mmap threshold by themselves, which leaves
    # this small UNet nothing to fault in untuned (measured: 0 pages)
    winograd.FUSED = False
    on = tune_allocator()
    assert tune_allocator() is on  # once per process
    torch.set_num_threads(1)
    # the bundled DDPM's UNet at batch 16: activations of 0.1-5 MB, as in `gencli sample ddpm`
    config = DiffusionModel.config_for_data(28, 1, None)["unet"]
    unet = UNet2DModel({k: v for k, v in config.items() if k != "num_class_embeds"}).eval()
    x, t = torch.randn(16, 1, 28, 28), torch.full((16,), 500)
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.inference_mode(), unet.fast_inference():
        for _ in range(2):
            unet(x, t)
        counts = []
        for _ in range(5):
            before = faults()
            unet(x, t)
            counts.append(faults() - before)
    # the median pass: untuned, glibc's dynamic mmap threshold (raised by each large free) now and then
    # keeps one whole pass in the heap (seen once in a full suite: a minimum of 0 pages, 2,320 the usual)
    print(on, sorted(counts)[len(counts) // 2])
""")


def probe(**env) -> tuple[bool, int]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=full, check=True)
    on, count = out.stdout.split()
    return on == "True", int(count)


glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"),
                           reason="mallopt tuning is for Linux/glibc")


@glibc
def test_tuned_allocator_reuses_freed_blocks_instead_of_faulting_in_new_pages():
    on, tuned = probe()
    assert on
    off, untuned = probe(GENCLI_NO_MALLOPT="1")
    assert not off
    # Page faults per forward pass. Absolute counts depend on the machine (glibc version, its
    # dynamic mmap threshold, page size): measured 1,500-7,400 untuned and 0-260 tuned on the
    # 2-core AMD EPYC dev VM (2026-11/12). What must hold anywhere: without tuning there IS
    # something to save (the big activations are mmapped and faulted in again every pass), and
    # the tuning removes most of it.
    assert untuned >= 100, f"untuned run faulted only {untuned} pages: nothing for the tuning to remove here"
    assert tuned <= untuned / 4, (tuned, untuned)


@glibc
def test_a_users_own_malloc_settings_are_left_alone():
    on, _ = probe(MALLOC_MMAP_THRESHOLD_="65536")
    assert not on
