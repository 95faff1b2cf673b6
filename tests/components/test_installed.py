"""``components`` is a library: installed outside the repository, it composes a ModelService alone."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import venv
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

from components import crd_schemas

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

SCRIPT = textwrap.dedent('''
    import sys
    target = sys.argv[1]
    sys.path.insert(0, target)
    sys.path.append(sys.argv[3])  # the dependencies, without the checkout's .pth files
    import pulumi
    import components
    from components import ModelService, ModelServiceArgs
    from components.service import CanaryArgs
    from components.testing import install_mocks

    assert components.__file__.startswith(target), components.__file__
    repo = sys.argv[2]
    assert not {repo, repo + "/app", ""} & set(sys.path), sys.path
    mocks = install_mocks()
    image = "acr.azurecr.io/modelship/digits:r-digits-1@sha256:" + "b" * 64

    @pulumi.runtime.test
    def compose():
        canary = CanaryArgs(prometheus_url="https://amw.westeurope.prometheus.monitor.azure.com",
                            analysis_client_id="client")
        svc = ModelService("svc", ModelServiceArgs(image=image, model_name="digits", model_version="1",
                                                   dns_label="digits", location="westeurope", canary=canary))
        return svc.url.apply(print)

    compose()
    print(sorted({r.type for r in mocks.resources if r.custom}))
''')


def library_source(out: Path) -> Path:
    """The files ``pip install .`` reads, copied to ``out``: a checkout's leftover ``build/`` (setuptools
    reuses its ``build/lib``) must not add packages that the project no longer ships."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    shutil.copy(ROOT / "pyproject.toml", out / "pyproject.toml")
    for module in setuptools.get("py-modules", []):
        shutil.copy(ROOT / f"{module}.py", out / f"{module}.py")
    for package in setuptools["packages"]:
        shutil.copytree(ROOT / package, out / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return out


def test_installed_copy_composes_a_model_service(tmp_path: Path) -> None:
    target = tmp_path / "site"
    (tmp_path / "src").mkdir()
    source = library_source(tmp_path / "src")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-compile", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    assert (target / "components" / "service.py").is_file()
    assert (target / "modelship_contract" / "manifest.py").is_file()
    assert not (target / "modelserver").exists()  # the server ships only in the image
    # -I: no cwd, no PYTHONPATH, no user site; -S: none of the checkout venv's .pth files (its editable
    # install, app/ on the path); run from an empty directory outside the repo.
    purelib = sysconfig.get_paths()["purelib"]
    # The installed mocks check the Rollout against Argo Rollouts' CRDs, which live beside the repository.
    env = {**os.environ, "MODELSHIP_CRD_SCHEMAS": str(crd_schemas.schema_dir())}
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", SCRIPT, str(target), str(ROOT), purelib],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "http://digits.westeurope.cloudapp.azure.com"
    assert lines[-1] == str(sorted([
        "kubernetes:argoproj.io/v1alpha1:AnalysisTemplate", "kubernetes:argoproj.io/v1alpha1:Rollout",
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
        "kubernetes:core/v1:Namespace", "kubernetes:core/v1:Service", "kubernetes:core/v1:ServiceAccount",
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "kubernetes:policy/v1:PodDisruptionBudget",
    ]))


# --- the library wheel (`pip wheel .`) in a clean venv ---------------------------------------------

SERVER_ONLY = ("modelserver", "onnxruntime", "numpy", "starlette", "uvicorn", "orjson", "prometheus_client")
"""The server's package and its dependencies: none of them may be needed by the library."""


def runtime_closure() -> dict[str, importlib.metadata.Distribution]:
    """The library's runtime requirements (pyproject.toml) and theirs, as installed in the checkout's venv:
    exactly the versions CI tested (requirements.txt pins them)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    while todo:
        requirement = todo.pop()
        key = requirement.name.lower().replace("_", "-")
        if key in found:
            continue
        found[key] = dist = importlib.metadata.distribution(requirement.name)
        for raw in dist.requires or []:
            sub = Requirement(raw)
            if sub.marker is None or sub.marker.evaluate({"extra": ""}):
                todo.append(sub)
    return found


def link_distributions(dists: dict[str, importlib.metadata.Distribution], site: Path) -> int:
    """Make each distribution's files (its RECORD) appear in ``site`` as symlinks; return how many.

    Offline stand-in for ``pip install`` of the pinned requirements, whose wheels are not kept here: the
    clean venv gets these distributions' files and metadata and nothing else of the checkout's venv.
    """
    count = 0
    for dist in dists.values():
        base = Path(dist.locate_file(""))
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # console scripts outside site-packages; bytecode is rebuilt on import
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(base / file)
                count += 1
    return count


def test_the_wheel_holds_the_library_and_installs_into_a_clean_venv(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    source = library_source(tmp_path / "src")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("modelship-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    tops = {top for top in tops if not top.endswith(".dist-info")}
    assert tops == {"components", "modelstore", "modelship_contract", "preflight", "settings.py"}

    venv_dir = tmp_path / "venv"
    venv.create(venv_dir, with_pip=False)
    python = venv_dir / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(python), "-c", purelib], capture_output=True, text=True, check=True,
                               timeout=60).stdout.strip())
    dists = runtime_closure()
    assert not set(SERVER_ONLY) & {d.replace("-", "_") for d in dists}, sorted(dists)
    assert link_distributions(dists, site) > 100
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    install = subprocess.run([*pip, "install", "--quiet", "--no-index", "--no-deps", str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    # Every requirement the wheel declares, and theirs, is met by what the clean venv holds.
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr

    probe = textwrap.dedent(f"""
        import importlib.util, sys
        import components, components.stack, modelstore, modelstore.store, modelstore.signing
        import modelship_contract, modelship_contract.manifest, modelship_contract.image
        import preflight.cli, settings
        for module in (components, modelstore, modelship_contract):
            assert module.__file__.startswith({str(site)!r}), module.__file__
        print(sorted(m for m in {SERVER_ONLY!r} if importlib.util.find_spec(m) is not None))
    """)
    result = subprocess.run([str(python), "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # the server's dependencies are not even installed
