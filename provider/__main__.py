"""Entry point of the modelship component package: serves components.package.COMPONENTS.

Pulumi's Python language host runs this file when a program in any language uses the package
(``pulumi package add <repository>/provider``); the schema is inferred from the components.
"""

import sys
import tomllib
from pathlib import Path

import pulumi.provider.experimental as experimental

ROOT = Path(__file__).resolve().parent.parent
"""The repository: the components live there, beside this directory."""


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from components.package import COMPONENTS, PACKAGE

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    experimental.component_provider_host(COMPONENTS, name=PACKAGE, version=version)


if __name__ == "__main__":
    main()
