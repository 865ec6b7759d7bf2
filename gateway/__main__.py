"""`python -m gateway`: the same as the `l402-gateway` console script."""

import sys

from gateway.cli import main

sys.exit(main())
