"""One short GPU check (< 3 min on an H100): every MSDA path (packed grid_sample, gather, and the Triton kernel on
CUDA) == reference (fwd+bwd) with its time per call, parity vectors on the device,
fp16/bf16 autocast error of `tiny` at 512^2 vs fp32, optional torch.compile, and an images/s table.

    python bench/gpu_check.py             # on a CUDA machine
    python bench/gpu_check.py --cpu-smoke # tiny sizes on the CPU: checks the script itself
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from vitseg_cli import build_model, load_model
from vitseg_cli.model.msda import ms_deform_attn_fast, ms_deform_attn_gather, ms_deform_attn_reference, msda_impl

PARITY = Path(__file__).resolve().parents[1] / "tests" / "data" / "parity"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def msda_paths(device) -> dict:
    paths = {"grid": ms_deform_attn_fast, "gather": ms_deform_attn_gather}
    if device.type == "cuda":
        try:
            from vitseg_cli.model.msda_triton import ms_deform_attn_triton
        except ImportError as err:
            print(f"triton: not importable ({err}): FAIL")
            paths["triton"] = None
        else:
            paths["triton"] = ms_deform_attn_triton
    return paths


def _ms_per_call(fn, args, device, repeats: int = 10) -> float:
    with torch.no_grad():
        fn(*args)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn(*args)
        sync(device)
    return (time.perf_counter() - t0) / repeats * 1e3


def check_msda(device) -> bool:
    ok = True
    cases = [([(32, 32), (16, 16), (8, 8)], 2, 300, 6, 32, 4), ([(16, 16)], 1, 500, 6, 32, 4)]
    if device.type == "cuda":  # a tiny-backbone-sized call (512^2 input: injector over the three prior levels)
        cases.append(([(64, 64), (32, 32), (16, 16)], 1, 1024, 6, 16, 4))
    for seed, (shapes, n, lq, m, dh, p) in enumerate(cases):
        g = torch.Generator(device="cpu").manual_seed(seed)
        s = sum(h * w for h, w in shapes)
        value = torch.randn(n, s, m, dh, generator=g).to(device).requires_grad_()
        loc = (torch.rand(n, lq, m, len(shapes), p, 2, generator=g) * 1.6 - 0.3).to(device).requires_grad_()
        w = torch.rand(n, lq, m, len(shapes), p, generator=g).to(device).requires_grad_()
        ref = ms_deform_attn_reference(value, shapes, loc, w)
        probe = torch.randn_like(ref)
        gr = torch.autograd.grad((ref * probe).sum(), (value, loc, w))
        rel = lambda a, b: ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()  # noqa: E731
        args = (value.detach(), shapes, loc.detach(), w.detach())
        print(f"msda case {seed}: reference {_ms_per_call(ms_deform_attn_reference, args, device):.3f} ms/call")
        for name, fn in msda_paths(device).items():
            if fn is None:
                ok = False
                continue
            out = fn(value, shapes, loc, w)
            gf = torch.autograd.grad((out * probe).sum(), (value, loc, w))
            errs = [rel(out, ref)] + [rel(b, a) for a, b in zip(gr, gf)]
            # float32 coordinates differ by ~1e-6 px; location grads jump where a point crosses a pixel edge
            good = errs[0] < 1e-5 and errs[1] < 1e-5 and errs[3] < 1e-5 and errs[2] < 1e-2
            ok &= good
            print(f"msda case {seed} {name:<7}: max rel err: out {errs[0]:.1e} dvalue {errs[1]:.1e} "
                  f"dloc {errs[2]:.1e} dweights {errs[3]:.1e} {'OK' if good else 'FAIL'}; "
                  f"{_ms_per_call(fn, args, device):.3f} ms/call")
    return ok


def check_parity(device) -> bool:
    if not (PARITY / "mini_case.pt").exists():
        print("parity vectors not found: skipped")
        return True
    config = json.loads((PARITY / "mini_config.json").read_text())
    case = torch.load(PARITY / "mini_case.pt", weights_only=True)
    model = load_model(PARITY / "mini_checkpoint.pth", spec={"model": {"backbone": config}}, device=device)
    ok = True
    with torch.no_grad():
        for impl in ("reference", "fast"):
            with msda_impl(impl):
                outs = model.backbone(case["input"].to(device))
            err = max((o.cpu() - r).abs().max().item() for o, r in zip(outs, case["outputs"]))
            ok &= err <= 1e-3
            print(f"parity ({impl}): max|d| {err:.1e} {'OK' if err <= 1e-3 else 'FAIL'}")
    return ok


def bench(fn, x, device, repeats) -> float:
    with torch.no_grad():
        for _ in range(2):
            fn(x)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn(x)
        sync(device)
    return repeats * x.shape[0] / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-smoke", action="store_true", help="run everything small on the CPU")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        print("no CUDA device (use --cpu-smoke to test the script)")
        return 2
    device = torch.device("cpu" if smoke else "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 numbers are true fp32
        torch.backends.cudnn.allow_tf32 = False
        print(torch.cuda.get_device_name(), torch.__version__)
    ok = check_msda(device) & check_parity(device)

    preset, side, batch, repeats = ("nano", 64, 1, 2) if smoke else ("tiny", 512, 8, 20)
    model = build_model(preset).backbone.to(device).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g).to(device) * 0.02)
    x = torch.randn(batch, 3, side, side, generator=g).to(device)
    with torch.no_grad():
        ref = model(x)
    rows = []
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if dtype is not None and device.type == "cpu" and dtype == torch.float16:
            continue  # CPU autocast fp16 coverage is thin; the smoke run only checks the code path
        def fwd(t, dtype=dtype):
            if dtype is None:
                return model(t)
            with torch.autocast(device.type, dtype=dtype):
                return model(t)
        with torch.no_grad():
            outs = fwd(x)
        err = max((o.float() - r).abs().max().item() for o, r in zip(outs, ref))
        scale = max(r.abs().max().item() for r in ref)
        rows.append((name, "eager", bench(fwd, x, device, repeats), err / scale))
        if not args.no_compile:
            try:
                compiled = torch.compile(fwd, dynamic=False)
                with torch.no_grad():
                    outs = compiled(x)
                err = max((o.float() - r).abs().max().item() for o, r in zip(outs, ref))
                rows.append((name, "compiled", bench(compiled, x, device, repeats), err / scale))
            except Exception as e:  # compile is optional: report and go on
                print(f"torch.compile ({name}) failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    print(f"\n{preset} backbone {side}x{side}, batch {batch}, {device}:")
    print(f"{'dtype':<6} {'mode':<9} {'img/s':>8} {'max rel err vs fp32':>20}")
    for name, mode, ips, rel in rows:
        print(f"{name:<6} {mode:<9} {ips:>8.1f} {rel:>20.1e}")
    print("ALL OK" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
