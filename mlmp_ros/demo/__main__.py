"""``python -m mlmp_ros.demo``: the same as ``mlmp-demo``."""

import sys

from .main import main

sys.exit(main())
