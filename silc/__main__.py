"""``python -m silc`` runs the silc-bench CLI."""

import sys

from silc.cli import main

sys.exit(main())
