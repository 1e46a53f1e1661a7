"""``python -m liquidgen`` == the ``liquidgen`` command."""

import sys

from liquidgen.cli import main

sys.exit(main())
