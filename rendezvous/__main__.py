"""`python -m rendezvous` is the `rendezvous` command."""

import sys

from .cli import main

sys.exit(main())
