"""``python -m mlmp_ros.bench``: the same as ``mlmp-bench``."""

import sys

from .cli.main import main

sys.exit(main())
