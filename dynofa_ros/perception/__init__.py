"""ROS-free perception pipeline: image decoding, pre-processing, keep-latest serving, statistics."""
