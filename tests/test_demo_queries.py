"""The shipped demo answers its example queries: for each, at least 4 of its top-5 ShapesRef test images
satisfy the query, judged from the scene graphs by the independent evaluator (hrem.eval.shapes_truth)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hrem.checkpoint.loaded import load_model
from hrem.data.cache import ensure_shapesref
from hrem.data.datasets import ImageDataset, ImageLoader, open_retrieval_split
from hrem.pipeline.demo import DEMO_MODEL, EXAMPLE_QUERIES, query_truth
from hrem.pipeline.encode import EncodeOptions, encode_captions, encode_images


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    return ensure_shapesref(tmp_path_factory.mktemp("demo") / "shapes", splits=("test",))


def test_example_queries_find_what_they_ask_for(test_split):
    loaded = load_model(DEMO_MODEL, torch.device("cpu"))
    split = open_retrieval_split(test_split, "test")
    options = EncodeOptions(torch.device("cpu"), batch_size=64)
    images = encode_images(loaded.model, ImageDataset(split, ImageLoader(split, loaded.preprocess)), options)
    queries = encode_captions(loaded.model, list(EXAMPLE_QUERIES), loaded.tokenizer, options)
    for query, vector in zip(EXAMPLE_QUERIES, queries):
        top = np.argsort(-(images @ vector), kind="stable")[:5]
        truth = query_truth(test_split, query, split.image_ids[top].tolist())
        assert truth is not None and sum(truth) >= 4, (query, truth)
