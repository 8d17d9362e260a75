"""FAISS indices over the embeddings directory. Never imports torch or the model."""
