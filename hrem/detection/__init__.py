"""Region detectors trained by hrem (BUTD-style): the ShapesRef detector (hrem.detection.model)."""
from hrem.detection.model import Detections, ShapesDetector, build_detector

__all__ = ["Detections", "ShapesDetector", "build_detector"]
