"""``python -m preflight --stack dev`` (the same as ``modelship-doctor``)."""

import sys

from preflight.cli import main

sys.exit(main())
