"""`python -m gateway.buyer` = the `l402-buyer` console script."""

from gateway.buyer.cli import main

raise SystemExit(main())
