"""The modelship CrossGuard policy pack: ``pulumi preview|up --policy-pack policy``.

Only wraps the rules of ``rules.py`` (kept importable, and unit-tested, without the CLI).
"""

import os
import sys

from pulumi_policy import EnforcementLevel, PolicyPack

# The CLI runs this file from the pack's own virtualenv with the pack folder as a plain
# directory, not as the ``policy`` package, so the rules module is imported by path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rules import POLICIES

PolicyPack(
    name="modelship",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
