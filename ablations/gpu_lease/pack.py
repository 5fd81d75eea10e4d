"""Pack a model folder for the device machine's 64 MiB transfer, losslessly for every use spd
makes of it on the tasks named: the word-embedding rows of tokens the tasks' train and
validation text can produce (plus the special tokens) and every other tensor whole, fp32 bytes
split into planes and xz-compressed. Unused rows become zeros (never looked up).

    python pack.py MODEL_DIR OUT_DIR TASK [TASK ...]      (here)
    python pack.py --unpack OUT_DIR MODEL_DIR             (there; checks the sha256 it recorded)
"""
import gzip, hashlib, json, lzma, shutil, sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

GLUE = Path(__file__).resolve().parents[3] / "shared" / "data" / "glue"
WEIGHTS = "model.safetensors"


def digest(sd):
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode()); h.update(sd[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def used_ids(model_dir, tasks):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = set(tok.all_special_ids)
    for t in tasks:
        for split in ("train", "validation"):
            for line in gzip.open(GLUE / t / f"{split}.jsonl.gz"):
                r = json.loads(line)
                a = r.get("sentence1", r.get("sentence"))
                b = r.get("sentence2")
                ids.update(tok(a, b)["input_ids"] if b is not None else tok(a)["input_ids"])
    return sorted(ids)


def restrict(sd, ids):
    key = next(k for k in sd if k.endswith("word_embeddings.weight"))
    full = sd[key]
    out = dict(sd)
    out[key] = torch.zeros_like(full)
    out[key][ids] = full[ids]
    return out, key


def pack(model_dir, out, tasks):
    model_dir, out = Path(model_dir), Path(out)
    sd = load_file(model_dir / WEIGHTS)
    ids = used_ids(model_dir, tasks)
    restricted, key = restrict(sd, ids)
    out.mkdir(parents=True, exist_ok=True)
    for f in model_dir.iterdir():
        if f.is_file() and f.name != WEIGHTS:
            shutil.copy(f, out / f.name)
    small = dict(sd)
    small[key] = sd[key][ids]
    names = sorted(small)
    meta = {"tensors": [[k, list(small[k].shape), str(small[k].dtype)] for k in names],
            "embedding": key, "vocab": sd[key].shape[0], "ids": ids, "sha256": digest(restricted)}
    f32 = [small[k].contiguous().numpy().view(np.uint8).reshape(-1, 4) for k in names
           if small[k].dtype == torch.float32]
    planes = np.concatenate(f32).T.copy() if f32 else np.zeros((4, 0), np.uint8)
    other = b"".join(small[k].contiguous().numpy().tobytes() for k in names
                     if small[k].dtype != torch.float32)
    blob = lzma.compress(b"".join([planes.tobytes(), other]), preset=6)
    (out / "weights.xz").write_bytes(blob)
    (out / "weights.json").write_text(json.dumps(meta))
    print(f"{model_dir}: {len(ids)} of {meta['vocab']} embedding rows; {len(blob) / 1e6:.1f} MB")


def unpack(packed, model_dir):
    packed, model_dir = Path(packed), Path(model_dir)
    meta = json.loads((packed / "weights.json").read_text())
    raw = lzma.decompress((packed / "weights.xz").read_bytes())
    sizes = {k: int(np.prod(s)) for k, s, _ in meta["tensors"]}
    n32 = sum(sizes[k] for k, _, d in meta["tensors"] if d == "torch.float32")
    planes = np.frombuffer(raw[:4 * n32], np.uint8).reshape(4, n32).T.copy().view(np.float32)
    other, sd, i, j = raw[4 * n32:], {}, 0, 0
    for k, shape, dtype in meta["tensors"]:
        if dtype == "torch.float32":
            sd[k] = torch.from_numpy(planes[i:i + sizes[k]].reshape(-1).copy()).reshape(shape)
            i += sizes[k]
        else:
            dt = getattr(torch, dtype.split(".")[1])
            n = sizes[k] * torch.empty(0, dtype=dt).element_size()
            sd[k] = torch.frombuffer(bytearray(other[j:j + n]), dtype=dt).reshape(shape)
            j += n
    key = meta["embedding"]
    rows = sd[key]
    sd[key] = torch.zeros(meta["vocab"], rows.shape[1], dtype=rows.dtype)
    sd[key][meta["ids"]] = rows
    if digest(sd) != meta["sha256"]:
        sys.exit(f"unpack {packed}: sha256 mismatch")
    tmp = model_dir.with_name(model_dir.name + ".tmp")  # appears whole: runners wait for it
    tmp.mkdir(parents=True, exist_ok=True)
    for f in packed.iterdir():
        if f.name not in ("weights.xz", "weights.json"):
            shutil.copy(f, tmp / f.name)
    save_file(sd, str(tmp / WEIGHTS), metadata={"format": "pt"})
    tmp.rename(model_dir)
    print(f"unpacked {packed} -> {model_dir} (sha256 ok)")


if __name__ == "__main__":
    if sys.argv[1] == "--unpack":
        unpack(sys.argv[2], sys.argv[3])
    else:
        pack(sys.argv[1], sys.argv[2], sys.argv[3:])
