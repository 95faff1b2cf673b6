"""Image build benchmark: cold build, warm rebuilds after a code-only and a model-only change, image size.

Builds exactly as ``make up`` does (the stack's build spec, BuildKit on the local Docker Engine) from a
copy of ``app/`` in a temporary directory, so the checkout and a running deployment are untouched.

    .venv/bin/python benchmarks/bench_build.py [--skip-cold]

``--skip-cold`` leaves out the ``--no-cache`` build (minutes: it reinstalls the Python dependencies).
Prints one table with each figure and its ratio to the cold build.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "app")]

from components.build_spec import make_build_spec, stage_contract  # noqa: E402
from delivery import engine  # noqa: E402
from delivery.build import choose_base_image, context_digest  # noqa: E402
from delivery.settings import LocalSettings  # noqa: E402
from modelship_contract.signature import sign  # noqa: E402
from modelstore.signing import ensure_key, export_trusted_keys  # noqa: E402

REPO = "modelship-bench/digits"


def build(context: Path, base: str, no_cache: bool = False) -> tuple[float, str]:
    stage_contract(context)
    spec = make_build_spec(context, revision=f"dev-{context_digest(context)[:12]}", base_image=base)
    ref = spec.tags_for(REPO)[0]
    started = time.monotonic()
    iid = engine.build(spec.context, spec.dockerfile, spec.build_args, [ref], echo=False, no_cache=no_cache)
    return time.monotonic() - started, iid


def layer_sizes(image: str) -> list[tuple[int, str]]:
    out = engine.docker("history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", image).stdout
    rows = []
    for line in out.splitlines():
        size, _, step = line.partition("\t")
        rows.append((size, step.strip()[:70]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cold", action="store_true", help="skip the --no-cache build")
    args = parser.parse_args(argv)
    if not engine.engine_available():
        print("no Docker Engine answers: run scripts/bootstrap.sh", file=sys.stderr)
        return 1
    from training.train_digits import train

    settings = LocalSettings.from_env({})
    base = choose_base_image(settings)
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        ctx = Path(tmp) / "app"
        shutil.copytree(ROOT / "app", ctx, ignore=shutil.ignore_patterns("model", "__pycache__", "*.pyc"))
        print("training the demo model (1.0.0)...", flush=True)
        train(ctx / "model", "digits", "1.0.0", source_revision="bench")
        # Signed as the model store hands models over; the build verifies it against trust/.
        keys = ensure_key(Path(tmp) / "keys")
        sign(ctx / "model", keys.private_key)
        export_trusted_keys(ctx / "trust", keys.trusted_dir)
        if not args.skip_cold:
            # --no-cache: every step runs again (the local base image is reused, not pulled).
            print("cold build (--no-cache)...", flush=True)
            secs, iid = build(ctx, base, no_cache=True)
            rows.append(("cold build", secs, iid))
        else:
            build(ctx, base)  # prime the cache so the warm figures are warm
        print("rebuild, nothing changed...", flush=True)
        secs, iid = build(ctx, base)
        rows.append(("rebuild, nothing changed", secs, iid))
        print("rebuild after a code-only change...", flush=True)
        init = ctx / "modelserver" / "__init__.py"
        init.write_text(init.read_text() + f"\n# bench {time.time()}\n")
        secs, iid = build(ctx, base)
        rows.append(("rebuild after a code-only change", secs, iid))
        print("rebuild after a model-only change (1.1.0)...", flush=True)
        shutil.rmtree(ctx / "model")
        train(ctx / "model", "digits", "1.1.0", source_revision="bench")
        sign(ctx / "model", keys.private_key)
        secs, iid = build(ctx, base)
        rows.append(("rebuild after a model-only change", secs, iid))
        model_bytes = sum(p.stat().st_size for p in (ctx / "model").iterdir())

    final = rows[-1][2]
    size = engine.image_size(final)
    base_size = engine.image_size(base)
    cold = rows[0][1] if not args.skip_cold else None
    print()
    machine = engine.docker("info", "--format", "{{.NCPU}} CPUs, {{.MemTotal}} B RAM").stdout.strip()
    print(f"machine: {machine}; base image {base}")
    print(f"{'step':<36}{'seconds':>10}{'vs cold':>10}")
    for name, secs, _ in rows:
        ratio = f"{secs / cold:.3f}" if cold else "n/a"
        print(f"{name:<36}{secs:>10.2f}{ratio:>10}")
    print()
    print(f"{'image size':<36}{size / 1e6:>10.1f} MB")
    print(f"{'  of which base image':<36}{base_size / 1e6:>10.1f} MB  ({base_size / size:.0%})")
    print(f"{'  of which model files':<36}{model_bytes / 1e6:>10.3f} MB")
    print("\nlayers (newest first):")
    for layer_size, step in layer_sizes(final):
        print(f"  {layer_size:>8}  {step}")
    for _name, _, iid in rows:
        engine.docker("rmi", "-f", iid, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
