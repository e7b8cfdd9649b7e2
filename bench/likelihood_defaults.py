"""Measure a trained likelihood-family run on the Fashion-MNIST test split (what weights/README.md
reports): bits/dim through `gencli evaluate nll`'s library function, and reconstruction MSE / PSNR
for the families that can translate (reconstruct).

    python bench/likelihood_defaults.py vae runs/vae [--n 10000] [--samples 1,100] [--iwae-n 1000]

PSNR is 10 log10(1 / MSE) on images scaled to [0, 1] (8-bit, as written to PNG).
"""

from __future__ import annotations

import argparse
import json
import math
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("family")
    ap.add_argument("weights")
    ap.add_argument("--n", type=int, default=10000, help="test images for bits/dim and PSNR")
    ap.add_argument("--samples", default="", help="IWAE K values (VAEs), e.g. 1,100")
    ap.add_argument("--iwae-n", type=int, default=1000, help="test images for K > 1")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    import gencli
    from gencli import registry
    from gencli.io.datasets import resolve_dataset
    from gencli.metrics.likelihood import nll

    torch.manual_seed(args.seed)
    spec = registry.get_family(args.family)
    out: dict = {"family": args.family, "weights": args.weights}
    if "log_likelihood" in spec.capabilities:
        ks = [int(k) for k in args.samples.split(",") if k] or [None]
        for k in ks:
            n = args.n if (k or 1) == 1 else min(args.n, args.iwae_n)
            r = nll(["fashion-mnist:test"], model=args.family, model_weights=args.weights,
                    options={"samples": k} if k else {}, seed=args.seed, limit=n)
            key = f"bpd_k{k}" if k else "bpd"
            out[key] = {"bits_per_dim": round(r["bits_per_dim"], 4), "sem": round(r["bits_per_dim_sem"], 4),
                        "n": r["n"], "seconds": r["seconds"]}
            print(json.dumps({key: out[key]}), flush=True)
    if "translate" in spec.capabilities:
        model = gencli.load(args.family, args.weights)
        ds = resolve_dataset("fashion-mnist", split="test")
        t0 = time.perf_counter()
        se, count = 0.0, 0
        with torch.inference_mode():
            for lo in range(0, args.n, 500):
                x, _ = ds.batch(slice(lo, min(lo + 500, args.n)))
                y = gencli.translate(model, x, batch_size=500)
                y8 = ((y.clamp(-1, 1) + 1) * 127.5).round() / 255
                se += float(((y8 - (x + 1) / 2) ** 2).sum())
                count += x.numel()
        mse = se / count
        out["recon"] = {"mse_01": round(mse, 6), "psnr_db": round(10 * math.log10(1 / mse), 2), "n": args.n,
                        "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps({"recon": out["recon"]}), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
