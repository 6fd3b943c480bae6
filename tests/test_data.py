import torch
import pytest
from PIL import Image

from fast_nst.training.data import (ImageFolderDataset, ResumableSampler, batch_to_device, build_loader,
                           crop_transform, find_training_images, load_sample_images)
from fast_nst.core.errors import DataError

from conftest import make_photo


def test_finds_flat_and_nested_images_of_all_extensions(tmp_path):
    for i, ext in enumerate(["jpg", "JPEG", "png", "webp", "bmp"]):
        make_photo(tmp_path / ("sub" if i % 2 else "") / f"a{i}.{ext}", (20, 20), seed=i,
                   fmt={"jpg": "JPEG", "JPEG": "JPEG"}.get(ext, ext.upper()))
    (tmp_path / "notes.txt").write_text("x")
    files = find_training_images(tmp_path)
    assert sorted(p.name for p in files) == sorted(["a0.jpg", "a1.JPEG", "a2.png", "a3.webp", "a4.bmp"])


def test_missing_or_empty_train_dir_says_how_to_get_coco(tmp_path):
    with pytest.raises(DataError, match="does not exist.*python -m fast_nst.download coco"):
        find_training_images(tmp_path / "nope")
    with pytest.raises(DataError, match="contains no images.*download coco"):
        find_training_images(tmp_path)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "1"])
def test_modes_become_rgb_crops(tmp_path, mode):
    fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
    path = make_photo(tmp_path / f"x.{fmt.lower()}", (50, 30), mode=mode, fmt=fmt)
    sample = ImageFolderDataset([path], 24, seed=0)[(0, 0)]
    assert sample.ok and sample.image.shape == (3, 24, 24) and sample.image.dtype == torch.uint8
    assert sample.image.max() > 0


def test_batch_to_device_makes_unit_floats_without_touching_the_batch():
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    before = images.clone()
    x = batch_to_device(images, torch.device("cpu"))
    assert x.dtype == torch.float32 and x.shape == (2, 3, 8, 8)
    assert torch.equal(x, before.float() / 255.0) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(images, before)  # the loader's tensor is not modified
    cl = batch_to_device(images, torch.device("cpu"), torch.channels_last)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, x)


def test_small_images_are_upscaled(tmp_path):
    path = make_photo(tmp_path / "tiny.png", (5, 3), fmt="PNG")
    sample = ImageFolderDataset([path], 32, seed=0)[(0, 0)]
    assert sample.ok and sample.image.shape == (3, 32, 32)


def test_crop_is_a_function_of_seed_epoch_index(train_dir):
    files = find_training_images(train_dir)
    ds = ImageFolderDataset(files, 24, seed=5)
    assert torch.equal(ds[(1, 3)].image, ds[(1, 3)].image)
    assert not torch.equal(ds[(0, 8)].image, ds[(1, 8)].image)  # new epoch, new crop
    img = Image.new("RGB", (100, 24))
    assert crop_transform(img, 24, None).shape == (3, 24, 24)


def test_sampler_covers_each_epoch_and_resumes_mid_epoch():
    s = ResumableSampler(10, batch_size=3, seed=1)
    it = iter(s)
    stream = [next(it) for _ in range(3 * 3 * 2)]  # 3 batches per epoch, 2 epochs
    epoch0 = [i for e, i in stream[:9]]
    assert len(set(epoch0)) == 9 and all(e == 0 for e, _ in stream[:9])
    assert all(e == 1 for e, _ in stream[9:])
    resumed = iter(ResumableSampler(10, batch_size=3, seed=1, start_batch=4))
    assert [next(resumed) for _ in range(6)] == stream[12:18]
    with pytest.raises(DataError, match="lower batch_size"):
        ResumableSampler(2, batch_size=3, seed=1)


def test_sampler_shards_global_batches_across_ranks():
    full = iter(ResumableSampler(12, batch_size=4, seed=0))
    r0 = iter(ResumableSampler(12, batch_size=2, seed=0, rank=0, world_size=2))
    r1 = iter(ResumableSampler(12, batch_size=2, seed=0, rank=1, world_size=2))
    for _ in range(3):
        glob = [next(full) for _ in range(4)]
        assert [next(r0) for _ in range(2)] + [next(r1) for _ in range(2)] == glob


def test_loader_yields_batches_and_reports_bad_files(tmp_path):
    good = [make_photo(tmp_path / f"g{i}.jpg", (40, 40), seed=i) for i in range(3)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    loader = build_loader(good + [bad], 16, 2, seed=0, num_workers=0)
    it = iter(loader)
    batches = [next(it) for _ in range(4)]
    assert all(b["image"].shape == (2, 3, 16, 16) and b["ok"] for b in batches)
    assert {f for b in batches for f in b["bad_files"]} == {str(bad)}


def test_worker_and_inprocess_loading_give_identical_batches(train_dir):
    files = find_training_images(train_dir)
    a = build_loader(files, 16, 2, seed=3, num_workers=0, start_step=2)
    b = build_loader(files, 16, 2, seed=3, num_workers=2, start_step=2)
    ia, ib = iter(a), iter(b)
    for _ in range(3):
        assert torch.equal(next(ia)["image"], next(ib)["image"])


def test_sample_images_are_fixed_and_skip_unreadable(tmp_path, train_dir):
    files = find_training_images(train_dir)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    s1 = load_sample_images([], [bad] + files, 3, 16)
    s2 = load_sample_images([], [bad] + files, 3, 16)
    assert s1.shape == (3, 3, 16, 16) and torch.equal(s1, s2)


def test_prepared_cache_yields_the_same_tensors_as_decoding(tmp_path, capsys):
    from fast_nst.commands.data import main
    from fast_nst.training.cache import cache_dir, open_cache

    d = tmp_path / "photos"
    for i, size in enumerate([(50, 40), (40, 70), (33, 33), (90, 41)]):
        make_photo(d / f"p{i}.jpg", size, seed=i)
    (d / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    files = find_training_images(d)
    assert main(["prepare", str(d), "--image_size", "32", "--num_workers", "0"]) == 0
    assert "1 unreadable files skipped" in capsys.readouterr().err
    cache = open_cache(d, 32, files)
    assert cache is not None and (cache_dir(d, 32) / "pixels.u8").is_file()
    plain = ImageFolderDataset(files, 32, seed=4)
    cached = ImageFolderDataset(files, 32, seed=4, cache=cache)
    for epoch in range(2):
        for i in range(len(files)):
            a, b = plain[(epoch, i)], cached[(epoch, i)]
            assert torch.equal(a.image, b.image) and a.bad_files == b.bad_files
    # through worker processes too
    la = build_loader(files, 32, 2, seed=1, num_workers=0)
    lb = build_loader(files, 32, 2, seed=1, num_workers=2, cache=cache)
    ia, ib = iter(la), iter(lb)
    for _ in range(3):
        assert torch.equal(next(ia)["image"], next(ib)["image"])
    # another image size, or a changed folder, does not use it
    assert open_cache(d, 48, files) is None
    make_photo(d / "new.jpg", (40, 40))
    with pytest.warns(UserWarning, match="stale cache"):
        assert open_cache(d, 32, find_training_images(d)) is None


def test_a_photo_replaced_under_its_name_makes_the_cache_stale(tmp_path, capsys):
    """The index used to hold names only: a photo overwritten with another (same name) kept
    training on the old pixels. Now each file's size and mtime are recorded and compared."""
    import json
    import os

    from fast_nst.training.cache import cache_dir, open_cache, prepare_cache

    d = tmp_path / "photos"
    for i in range(3):
        make_photo(d / f"p{i}.jpg", (40 + i, 36), seed=i)
    files = find_training_images(d)
    prepare_cache(d, 32, num_workers=0, progress=False)
    assert open_cache(d, 32, files) is not None
    refresh = f"refresh it with: python -m fast_nst.data prepare {d} --image_size 32"
    # Another photo under p1.jpg's name; its mtime set apart explicitly, not by the clock.
    st = os.stat(d / "p1.jpg")
    (d / "p1.jpg").write_bytes((d / "p2.jpg").read_bytes())
    os.utime(d / "p1.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.warns(UserWarning) as caught:
        assert open_cache(d, 32, files) is None
    message = str(caught[0].message)
    assert f"Ignoring stale cache {cache_dir(d, 32)} (p1.jpg changed since it was prepared); {refresh}" == message
    # The same bytes, only a newer mtime (an edit that kept the size): stale too.
    prepare_cache(d, 32, num_workers=0, progress=False)
    st = os.stat(d / "p0.jpg")
    os.utime(d / "p0.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    with pytest.warns(UserWarning, match=r"\(p0.jpg changed since it was prepared\)"):
        assert open_cache(d, 32, files) is None
    # A cache an older fast-nst wrote (version 1, no sizes and times) is rebuilt, with the reason.
    prepare_cache(d, 32, num_workers=0, progress=False)
    index = cache_dir(d, 32) / "index.json"
    meta = json.loads(index.read_text())
    assert [len(s) for s in meta["stats"]] == [2, 2, 2]
    del meta["stats"]
    index.write_text(json.dumps({**meta, "version": 1}))
    with pytest.warns(UserWarning, match="an older fast-nst made it without the photos' sizes and times") as caught:
        assert open_cache(d, 32, files) is None
    assert refresh.replace("refresh", "rebuild") in str(caught[0].message)


def test_loader_workers_are_capped_at_the_usable_cores(monkeypatch, train_dir):
    import fast_nst.training.data as data

    monkeypatch.setattr(data.os, "sched_getaffinity", lambda pid: {0, 1})
    assert data.usable_workers(4) == 2 and data.usable_workers(1) == 1 and data.usable_workers(0) == 0
    loader = build_loader(find_training_images(train_dir), 16, 2, seed=0, num_workers=8)
    assert loader.num_workers == 2


def test_prepare_decodes_with_every_usable_core_by_default(monkeypatch, tmp_path, capsys):
    import fast_nst.training.cache as data
    from fast_nst.commands.data import main as data_main

    seen = []

    class RecordingLoader(data.DataLoader):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs["num_workers"])
            super().__init__(*args, **{**kwargs, "num_workers": 0})  # decode here: quicker

    make_photo(tmp_path / "p.jpg", (40, 40))
    monkeypatch.setattr(data, "DataLoader", RecordingLoader)
    monkeypatch.setattr(data.os, "sched_getaffinity", lambda pid: set(range(6)))
    assert data_main(["prepare", str(tmp_path), "--image_size", "32"]) == 0
    assert data_main(["prepare", str(tmp_path), "--image_size", "32", "--num_workers", "1"]) == 0
    assert seen == [6, 1]
    assert "Cached 1 images" in capsys.readouterr().err
