"""``python -m flowkit.cli``: the ``flowkit`` command."""

import sys

from flowkit.cli.app import main

sys.exit(main())
