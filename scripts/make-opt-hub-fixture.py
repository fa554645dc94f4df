#!/usr/bin/env python3
"""Writes crates/llm/tests/fixtures/opt-tiny-preln-hub: the tiny OPT fixture laid out the way
the facebook/opt-* repositories on the Hugging Face Hub are, which predate tokenizer.json and
safetensors there:

    config.json  generation_config.json  pytorch_model.bin  vocab.json  merges.txt
    tokenizer_config.json  special_tokens_map.json

pytorch_model.bin is written in torch.save's zip format (the pickled state dict refers to one
raw little-endian storage file per tensor) with the original checkpoints' bare `decoder.*`
names and no `lm_head.weight` (tied to the embeddings). Standard library only: no torch is
needed, so the fixture can be regenerated anywhere (`python3 scripts/make-opt-hub-fixture.py`).
"""

import collections
import json
import pickle
import shutil
import struct
import sys
import types
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "crates/llm/tests/fixtures/opt-tiny-preln"
TARGET = ROOT / "crates/llm/tests/fixtures/opt-tiny-preln-hub"


def read_safetensors(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            sys.exit(f"{name}: only F32 tensors are expected, found {info['dtype']}")
        start, end = info["data_offsets"]
        out[name] = (info["shape"], body[start:end])
    return out


# Stand-ins for the torch globals the pickle names, registered so pickle writes them as
# `torch._utils._rebuild_tensor_v2` and `torch.FloatStorage`, exactly as torch.save does.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")


class FloatStorage:
    pass


FloatStorage.__module__ = "torch"
torch.FloatStorage = FloatStorage


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


class StoredTensor:
    """Pickles as torch.save pickles a tensor: a rebuild call over a persistent storage."""

    def __init__(self, key, shape, numel):
        self.key, self.shape, self.numel = key, shape, numel

    def __reduce__(self):
        stride, acc = [], 1
        for dim in reversed(self.shape):
            stride.insert(0, acc)
            acc *= dim
        storage = Storage(self.key, self.numel)
        return (
            _rebuild_tensor_v2,
            (storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()),
        )


class Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None


def write_torch_bin(tensors, path):
    state = collections.OrderedDict()
    blobs = {}
    for i, (name, (shape, raw)) in enumerate(tensors.items()):
        key = str(i)
        state[name] = StoredTensor(key, shape, len(raw) // 4)
        blobs[key] = raw
    with open(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        import io

        buf = io.BytesIO()
        TorchPickler(buf, protocol=2).dump(state)
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for key, raw in blobs.items():
            z.writestr(f"archive/data/{key}", raw)
        z.writestr("archive/version", "3\n")


def main():
    if TARGET.exists():
        shutil.rmtree(TARGET)
    TARGET.mkdir(parents=True)
    for name in ["config.json", "generation_config.json"]:
        shutil.copy(SOURCE / name, TARGET / name)

    tensors = read_safetensors(SOURCE / "model.safetensors")
    renamed = collections.OrderedDict()
    for name in sorted(tensors):
        if name == "lm_head.weight":
            continue
        renamed[name.removeprefix("model.")] = tensors[name]
    write_torch_bin(renamed, TARGET / "pytorch_model.bin")

    tok = json.loads((SOURCE / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    (TARGET / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (TARGET / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")

    def special(content):
        return {"content": content, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": True, "__type": "AddedToken"}

    (TARGET / "tokenizer_config.json").write_text(json.dumps({
        "errors": "replace",
        "unk_token": special("</s>"),
        "bos_token": special("</s>"),
        "eos_token": special("</s>"),
        "pad_token": special("<pad>"),
        "add_prefix_space": False,
        "add_bos_token": True,
        "special_tokens_map_file": None,
        "name_or_path": "facebook/opt-tiny",
    }, indent=2))
    (TARGET / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": special("</s>"),
        "eos_token": special("</s>"),
        "unk_token": special("</s>"),
        "pad_token": special("<pad>"),
    }, indent=2))
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
