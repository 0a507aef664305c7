"""``python -m mlmp_ros.ros``: the segmentation node (same as ``mlmp-segment``)."""

import sys

from .node import main

sys.exit(main())
