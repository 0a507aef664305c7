"""Camera streams: camera-rate replay on a simulated clock, and replay through the node (rclpy)."""
