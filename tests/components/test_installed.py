"""``components`` is a library: installed outside the repository, it composes a ModelService alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from pathlib import Path

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
