"""Readers for the standard on-disk formats; each validates what it reads and names the file, the expected
and the found value in its errors."""
from hrem.data.readers.karpathy import ImageCaptionSplit, read_karpathy
from hrem.data.readers.precomp import PrecompSplit, read_precomp
from hrem.data.readers.refs import RefObject, expand_sentences, read_mask, read_refs

__all__ = ["ImageCaptionSplit", "PrecompSplit", "RefObject", "expand_sentences", "read_karpathy", "read_mask",
           "read_precomp", "read_refs"]
