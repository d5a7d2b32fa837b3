from metricgate.cli import main
import sys

sys.exit(main())
