"""`python -m dataplatform.lib.demo ...` runs the demo generator's CLI."""

import sys

from dataplatform.lib.demo.cli import main

sys.exit(main())
