"""Print a GGUF file's header, metadata (arrays abbreviated) and tensor table."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from tensorsharp.errors import GGUFError
from tensorsharp.gguf import GGUFFile, GGUFValueType


def _short(value, max_items: int, max_chars: int) -> str:
    if isinstance(value, (list, np.ndarray)):
        head = [_short(v, max_items, max_chars) for v in value[:max_items]]
        more = f", ... ({len(value)} items)" if len(value) > max_items else ""
        return "[" + ", ".join(head) + more + "]"
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= max_chars else f"{text[:max_chars]}... ({len(text)} chars)"


def _type_name(types: tuple[GGUFValueType, ...]) -> str:
    return types[0].name if len(types) == 1 else f"{types[0].name}[{types[1].name}]"


def dump(f: GGUFFile, max_items: int, max_chars: int, out=sys.stdout) -> None:
    print(f"{f.path}: GGUF v{f.version}, {f.size} bytes, {len(f.metadata)} keys, {len(f.tensors)} tensors, "
          f"alignment {f.alignment}, data at {f.data_offset}", file=out)
    print("\nmetadata:", file=out)
    width = max((len(k) for k in f.metadata), default=0)
    for key, value in f.metadata.items():
        print(f"  {key:<{width}}  {_type_name(f.metadata_types[key]):<14} {_short(value, max_items, max_chars)}", file=out)
    print("\ntensors:", file=out)
    width = max((len(n) for n in f.tensors), default=0)
    print(f"  {'name':<{width}}  {'type':<8} {'shape (ne0 first)':<22} {'offset':>12} {'bytes':>12}", file=out)
    for t in f.tensors.values():
        print(f"  {t.name:<{width}}  {t.type_name:<8} {str(list(t.shape)):<22} {t.offset:>12} {t.n_bytes:>12}", file=out)
    total = sum(t.n_bytes for t in f.tensors.values())
    params = sum(t.n_elements for t in f.tensors.values())
    print(f"\n  {len(f.tensors)} tensors, {params:,} elements, {total:,} bytes of tensor data", file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("path")
    ap.add_argument("--items", type=int, default=8, help="array items shown (default 8)")
    ap.add_argument("--chars", type=int, default=120, help="characters of a string shown (default 120)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        f = GGUFFile(args.path)
    except GGUFError as e:
        print(f"{args.path}: {e}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - t0
    with f:
        dump(f, args.items, args.chars)
    print(f"  parsed in {elapsed * 1e3:.1f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
