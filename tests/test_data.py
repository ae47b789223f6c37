import numpy as np
import torch

from helpers.data import get_batch, load_tokens, prepare_data, step_offsets


def test_token_counts_and_dtype(data_dir):
    train, val = load_tokens(data_dir, "train"), load_tokens(data_dir, "val")
    assert train.dtype == np.uint16 and val.dtype == np.uint16
    assert (len(train), len(val)) == (301_966, 36_059)
    assert int(train.max()) < 50257


def test_prepared_files_are_reused_and_remade_when_stale(data_dir, tmp_path):
    import shutil

    shutil.copy(data_dir / "input.txt", tmp_path / "input.txt")
    first = prepare_data(tmp_path)
    assert not first["reused"]
    mtime = (tmp_path / "train.bin").stat().st_mtime_ns
    again = prepare_data(tmp_path)
    assert again["reused"] and (tmp_path / "train.bin").stat().st_mtime_ns == mtime
    # a damaged token file is noticed and made again
    (tmp_path / "val.bin").write_bytes(b"\0\0")
    remade = prepare_data(tmp_path)
    assert not remade["reused"] and remade["val_tokens"] == 36_059


def test_batches_are_next_token_pairs(data_dir):
    tokens = load_tokens(data_dir, "train")
    gen = torch.Generator().manual_seed(0)
    offsets = step_offsets(gen, len(tokens), 16, batch_size=4, grad_accum_steps=3)
    assert offsets.shape == (3, 4)
    x, y = get_batch(tokens, offsets[0], 16)
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    start = offsets[0, 0].item()
    assert x[0].tolist() == tokens[start : start + 16].tolist()
