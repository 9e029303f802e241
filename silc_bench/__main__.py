"""``python -m silc_bench`` runs the silc-bench CLI (e.g. under ``torchrun -m silc_bench train``)."""

import sys

from silc_bench.cli import main

sys.exit(main())
