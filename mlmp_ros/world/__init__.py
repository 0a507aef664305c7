"""A procedural world with per-pixel ground truth, its streams, and a small CLIP trained on it.

No ROS imports: the benchmark, the demo, the tests and the training script all use it.
"""

from .scenes import LAYOUTS, Scene, class_fractions, render_scene
from .textures import CLASSES, PALETTE, texture, texture_image

__all__ = ["CLASSES", "LAYOUTS", "PALETTE", "Scene", "class_fractions", "render_scene", "texture", "texture_image"]
