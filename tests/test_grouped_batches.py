"""Image-grouped training batches (`--group-images`): every image once with all its captions, the
caption -> image index right after length sorting, model outputs equal to encoding the repeated images,
and a training run that uses them."""
from __future__ import annotations

import json

import torch
from test_train_e2e import cli, write_precomp

from hrem.data.collate import GroupedTrainCollate
from hrem.data.datasets import ImageGroupDataset, ImageLoader, open_retrieval_split
from hrem.data.tokenize import TextTokenizer
from hrem.factory import create_model, load_card
from hrem.utils.paths import resolve_text_model_path


def test_grouped_batch_holds_each_image_once_with_its_captions(tmp_path):
    folder = write_precomp(tmp_path / "g_precomp", counts=(("train", 12), ("dev", 4), ("test", 4)))
    split = open_retrieval_split(folder, "train")
    tokenizer = TextTokenizer(resolve_text_model_path("packaged:all-MiniLM-L6-v2"), 32)
    groups = ImageGroupDataset(split, ImageLoader(split, None), batch_size=20)
    assert groups.items_per_batch == 4 and len(groups) == 12
    batch = GroupedTrainCollate(tokenizer)([groups[i] for i in (3, 7, 1, 0)])
    assert batch.images.regions.shape[0] == 4 and len(batch) == 20
    assert batch.image_rows.tolist() == [[3, 7, 1, 0][i] for i in batch.image_index.tolist()]
    lengths = batch.texts.attention_mask.sum(1)
    assert bool((lengths[:-1] >= lengths[1:]).all())                    # sorted longest first, as TrainCollate
    for j, row in enumerate(batch.image_rows.tolist()):                  # each caption really is of its image
        own = tokenizer([c for c, r in zip(split.captions, split.caption_image) if r == row])
        width = int(batch.texts.attention_mask[j].sum())
        ids = batch.texts.input_ids[j, :width]
        assert any(torch.equal(ids, own.input_ids[k, :width]) and int(own.attention_mask[k].sum()) == width
                   for k in range(own.input_ids.shape[0]))

    torch.manual_seed(0)
    model = create_model(load_card("tiny-regions")).eval()
    grouped = model.forward_train(batch.images, batch.texts, batch.image_index)
    repeated = type(batch.images)(regions=batch.images.regions[batch.image_index],
                                  lengths=batch.images.lengths[batch.image_index])
    expanded = model.forward_train(repeated, batch.texts)
    torch.testing.assert_close(grouped.img_emb, expanded.img_emb)
    torch.testing.assert_close(grouped.img_tokens, expanded.img_tokens)


def test_training_with_grouped_batches(tmp_path):
    folder = write_precomp(tmp_path / "t_precomp", counts=(("train", 60), ("dev", 10), ("test", 10)))
    cli("train", "--card", "tiny-regions", "--data", folder, "--out", tmp_path / "run", "--max-iters", "4",
        "--batch-size", "20", "--workers", "0", "--device", "cpu", "--group-images", "--set", "train.warmup_iters=1")
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if '"step"' in line]
    assert steps and all(s["loss"] > 0 for s in steps)
    assert json.loads((tmp_path / "run" / "train_args.json").read_text())["config"]["group_images"] is True
