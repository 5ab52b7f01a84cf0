"""`python -m jaxcps` runs the `jaxcps` command."""

import sys

from jaxcps.cli import main

sys.exit(main())
