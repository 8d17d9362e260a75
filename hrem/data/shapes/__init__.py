"""ShapesRef: procedurally drawn scenes with scene graphs, captions and unique referring expressions,
written in the standard retrieval (Karpathy JSON) and grounding (RefCOCO-style) formats."""
from hrem.data.shapes.generate import GenerationSummary, ShapesRefConfig, generate_shapesref, split_images

__all__ = ["GenerationSummary", "ShapesRefConfig", "generate_shapesref", "split_images"]
