import sys

from metricgate.cli import main

sys.exit(main())
