"""Vision primitives shared by grounding, detection and retrieval: letterboxing and the region-detector
contract (layer L2: imports only config/utils/store and torch)."""
