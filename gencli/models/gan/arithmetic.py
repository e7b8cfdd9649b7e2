"""Latent arithmetic as in the DCGAN paper: ``--arithmetic "1,2,3 - 4,5,6 + 7,8,9"`` (means of
seed groups, added and subtracted)."""

from __future__ import annotations

from gencli.errors import UsageError


def parse_arithmetic(expr: str) -> list[tuple[int, list[int]]]:
    """"1,2,3 - 4,5,6 + 7,8,9" -> [(+1, [1,2,3]), (-1, [4,5,6]), (+1, [7,8,9])]."""
    import re

    tokens = [t for t in re.split(r"\s*([+-])\s*", expr.strip()) if t != ""]
    terms: list[tuple[int, list[int]]] = []
    sign = 1
    expect_group = True
    for tok in tokens:
        if tok in "+-" and not expect_group:
            sign = 1 if tok == "+" else -1
            expect_group = True
            continue
        try:
            seeds = [int(s) for s in tok.split(",") if s.strip()]
        except ValueError:
            seeds = []
        if not expect_group or not seeds or any(s < 0 for s in seeds):
            raise UsageError(f"--arithmetic {expr!r}: write seed groups joined by + and -, e.g. '1,2,3 - 4,5,6 + 7,8,9'")
        terms.append((sign, seeds))
        expect_group = False
    if not terms or expect_group:
        raise UsageError(f"--arithmetic {expr!r}: write seed groups joined by + and -, e.g. '1,2,3 - 4,5,6 + 7,8,9'")
    return terms
