"""Image and text encoders of HREM (fragment-level features -> pooled joint embedding)."""
