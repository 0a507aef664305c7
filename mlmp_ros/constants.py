"""Names shared by the node, the live session, the demo and the benchmark, defined once.

Imports nothing: every layer (core, ros, bench, demo) may import it.
"""

NODE_NAME = "mlmp_segment"
# The camera topic of the sample stream and of the bench bags.
IMAGE_TOPIC = "/camera/image_raw"
# The node's outputs, relative to its namespace.
LABELS_TOPIC = "segmentation/labels"
CONFIDENCE_TOPIC = "segmentation/confidence"
# Where recorded outputs of a node in the root namespace are written in a bag, by kind.
RECORDED_TOPICS = {"labels": "/" + LABELS_TOPIC, "confidence": "/" + CONFIDENCE_TOPIC}
