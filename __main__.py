"""The modelship Pulumi program: load settings, build the stack, export its outputs."""

from pathlib import Path

import pulumi

from components.stack import build_stack
from settings import Settings

settings = Settings.load(pulumi.Config())
stack = build_stack(settings, Path(__file__).resolve().parent)
for key, value in stack.outputs.items():
    pulumi.export(key, value)
