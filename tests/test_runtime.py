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
        for _ in range(4):
            before = faults()
            unet(x, t)
            counts.append(faults() - before)
    print(on, min(counts))
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


HUGE_PROBE = textwrap.dedent("""
    import torch
    from gencli.runtime import tune_allocator
    on = tune_allocator()
    t = torch.ones(32 << 20)  # 128 MiB, from the heap once tuned
    with open("/proc/self/smaps_rollup") as f:
        huge = next(int(line.split()[1]) for line in f if line.startswith("AnonHugePages:"))
    print(on, huge)
""")


def huge_pages_kib(**env) -> tuple[bool, int]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", HUGE_PROBE], capture_output=True, text=True, env=full, check=True)
    on, kib = out.stdout.split()
    return on == "True", int(kib)


@glibc
def test_tuned_heap_asks_for_transparent_huge_pages():
    from gencli.runtime import thp_mode

    if thp_mode() != "madvise":
        pytest.skip(f"the kernel's transparent huge pages are {thp_mode()!r}, not 'madvise'")
    on, tuned = huge_pages_kib()
    assert on and tuned >= 64 << 10, tuned  # most of the tensor's 128 MiB in 2 MiB pages
    off, untuned = huge_pages_kib(GENCLI_NO_MALLOPT="1")
    assert not off and untuned < tuned / 4, (untuned, tuned)


def test_huge_pages_are_asked_for_only_where_the_kernel_waits_to_be_asked(monkeypatch):
    from gencli import runtime

    class NoCalls:  # any libc call would fail the test
        pass

    for mode in ("always", "never", None):
        monkeypatch.setattr(runtime, "thp_mode", lambda mode=mode: mode)
        assert runtime.advise_huge_heap(NoCalls()) is False
