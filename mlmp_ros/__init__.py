"""mlmp_ros: test-time adaptation of CLIP open-vocabulary segmentation (MLMP) for ROS 2."""

__version__ = "0.1.0"
