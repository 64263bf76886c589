"""`python -m jaxnet` runs the jaxnet command."""

import sys

from jaxnet.cli import main

sys.exit(main())
