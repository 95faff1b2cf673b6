"""``python -m modelstore``: the same command line as ``modelship-models``."""

import sys

from modelstore.cli import main

sys.exit(main())
