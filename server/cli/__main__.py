"""`python -m server.cli ...`: the `hra` command."""

import sys

from server.cli import main

sys.exit(main())
