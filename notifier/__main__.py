"""`python -m notifier` runs the same CLI as the `notifier` console script."""

import sys

from notifier.cli import main

sys.exit(main())
