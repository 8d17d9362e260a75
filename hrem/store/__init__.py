"""The embeddings directory: Parquet shards + manifest.json (pyarrow only; never imports torch)."""
