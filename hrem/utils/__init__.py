"""Small stdlib/numpy helpers shared by every layer. Nothing is re-exported implicitly."""
