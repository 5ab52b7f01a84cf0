"""`python -m jaxcps.bench` runs `jaxcps bench` (the `--eigen` child process is started so)."""

import sys

from jaxcps.bench.cli import main

sys.exit(main())
