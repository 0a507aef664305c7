"""Synonyms, templates, the window grid, overlap averaging and the protocol resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlmp_ros.core import ClassList, ConfigError, TextBank, average_windows, resolve_templates, target_size, window_grid
from mlmp_ros.core.windows import fit_to_window

from ..conftest import tiny_clip


def test_class_list_from_builtin_dataset_files():
    voc21 = ClassList.resolve("voc21")
    assert len(voc21) == 21 and voc21.names[0] == "background"
    assert voc21.synonyms[0][:3] == ("sky", "wall", "tree") and len(voc21.synonyms[0]) > 10
    assert voc21.synonyms[4] == ("ship",) and voc21.names[4] == "boat"
    assert voc21.query_to_class[: len(voc21.synonyms[0]) + 1] == [0] * len(voc21.synonyms[0]) + [1]
    coco = ClassList.resolve(["coco_stuff"])
    assert len(coco) == 171


def test_class_list_from_entries_and_files(tmp_path):
    cl = ClassList.resolve(["cat", "dog, puppy", " sky "])
    assert cl.names == ("cat", "dog", "sky") and cl.queries == ["cat", "dog", "puppy", "sky"]
    f = tmp_path / "mine.names.txt"
    f.write_text("road, street\ncar\n")
    (tmp_path / "mine.classes.txt").write_text("road\nvehicle\n")
    mine = ClassList.resolve(str(f))
    assert mine.names == ("road", "vehicle") and mine.synonyms[0] == ("road", "street")
    with pytest.raises(ConfigError, match="not found"):
        ClassList.resolve(str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="empty"):
        ClassList.resolve(["cat", "dog,"])


def test_templates_resolve():
    assert len(resolve_templates("templates_7")) == 7
    assert resolve_templates("single") == ["a photo of a {}"]
    assert resolve_templates(["a {} here", "the {}"]) == ["a {} here", "the {}"]
    with pytest.raises(ConfigError):
        resolve_templates(["no placeholder", "a {}"])
    with pytest.raises(ConfigError):
        resolve_templates("no_such_prompt_file")


def test_synonyms_map_to_classes_by_max_probability():
    loaded = tiny_clip(0)
    bank = TextBank(loaded.model, loaded.tokenizer, ClassList.resolve(["cat", "dog, puppy, hound", "sky"]), ["a {}"])
    assert bank.per_template.shape == (1, 5, 32) and bank.ensemble.shape == (5, 32)
    probs = torch.tensor([0.1, 0.2, 0.45, 0.05, 0.2]).view(5, 1, 1).expand(5, 2, 3)
    cls = bank.class_probabilities(probs, dim=0)
    assert cls.shape == (3, 2, 3)
    assert torch.allclose(cls[:, 0, 0], torch.tensor([0.1, 0.45, 0.2]))
    norms = bank.per_template.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_ensemble_is_the_normalised_mean_of_templates():
    loaded = tiny_clip(0)
    bank = TextBank(loaded.model, loaded.tokenizer, ClassList.resolve(["cat", "dog"]), resolve_templates("templates_7"))
    mean = bank.per_template.mean(0)
    assert torch.allclose(bank.ensemble, mean / mean.norm(dim=-1, keepdim=True))


def test_window_grid_matches_the_paper_protocol():
    assert window_grid(224, 224, (224, 224), (112, 112)) == [(0, 0)]
    grid = window_grid(560, 1120, (224, 224), (112, 112))
    assert len(grid) == 36 and grid[:2] == [(0, 0), (0, 112)] and grid[8] == (0, 896) and grid[9] == (112, 0)
    portrait = window_grid(1120, 560, (224, 224), (112, 112))
    assert len(portrait) == 36 and portrait[-1] == (896, 336)
    # a stride that does not land on the edge gets one flush window
    assert window_grid(224, 300, (224, 224), (112, 112)) == [(0, 0), (0, 76)]
    with pytest.raises(ValueError):
        window_grid(100, 300, (224, 224), (112, 112))


def test_protocol_resize_swaps_for_portrait_and_short_side():
    assert target_size(1024, 2048, [1120, 560]) == (560, 1120)
    assert target_size(2048, 1024, [1120, 560]) == (1120, 560)
    assert target_size(500, 500, [1120, 560]) == (1120, 560)  # square counts as portrait, like the reference
    assert target_size(480, 640, [224]) == (224, 299)
    assert target_size(480, 640, []) == (480, 640)
    assert fit_to_window((100, 300), (224, 224)) == (224, 672)


def test_overlap_averaging_per_pixel():
    corners = window_grid(224, 336, (224, 224), (112, 112))  # x = 0, 112
    logits = torch.stack([torch.full((2, 224, 224), 1.0), torch.full((2, 224, 224), 3.0)])
    avg = average_windows(logits, corners, (224, 336))
    assert avg.shape == (2, 224, 336)
    assert torch.all(avg[:, :, :112] == 1.0)
    assert torch.all(avg[:, :, 112:224] == 2.0)
    assert torch.all(avg[:, :, 224:] == 3.0)
    rnd = torch.randn(36, 3, 224, 224)
    grid = window_grid(560, 1120, (224, 224), (112, 112))
    out = average_windows(rnd, grid, (560, 1120))
    brute = np.zeros((3, 560, 1120))
    cnt = np.zeros((560, 1120))
    for w, (y, x) in zip(rnd.numpy(), grid):
        brute[:, y : y + 224, x : x + 224] += w
        cnt[y : y + 224, x : x + 224] += 1
    np.testing.assert_allclose(out.numpy(), brute / cnt, atol=1e-5)


def test_truncated_text_encoding_equals_open_clips_full_77_tokens():
    from mlmp_ros.core.text import encode_tokens

    loaded = tiny_clip(0)
    texts = ["a photo of a cat", "itap of a traffic light in the pouring rain at night", "x", "a {} in a video game."]
    tokens = loaded.tokenizer(texts)
    with torch.no_grad():
        full = loaded.model.encode_text(tokens, normalize=True)
        ours = encode_tokens(loaded.model, tokens)
    assert torch.allclose(ours, full, atol=1e-6)
