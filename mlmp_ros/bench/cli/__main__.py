"""``python -m mlmp_ros.bench.cli``: the same as ``mlmp-bench``."""

import sys

from .main import main

sys.exit(main())
