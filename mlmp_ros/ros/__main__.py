"""``python -m mlmp_ros.ros``: the segmentation node (same as ``mlmp-segment``)."""

import sys

from .main import main

sys.exit(main())
