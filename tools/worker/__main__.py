"""``python -m tools.worker``: the same as ``localedit worker``."""

import sys

from tools.worker.cli import main

sys.exit(main())
