"""PyTorch peer for benchmarks/engines.ts: the same BERT token classifier, as a user would run a Hugging
Face-style model on CPU (eager PyTorch, inference mode, F.linear layers, exact GELU, scores / sqrt(d) plus
an additive [batch, 1, seq, seq] mask, position ids fed explicitly), with the same weights and inputs.

Driven over stdin/stdout, one JSON object per line:
  {"cmd": "run", "batches": [[i, ...], ...]}   -> {"batchMs": [...], "totalMs": t}
  {"cmd": "logits", "indices": [...], "out": path} -> writes float32 logits [n_i, labels] back to back
  {"cmd": "matmul", "n": 2048, "runs": 5}       -> {"gflops": g}
  {"cmd": "rss"}                                -> {"maxRssKb": k}
  {"cmd": "quit"}
Timed work builds the padded int64 tensors and the mask from each sentence's arrays (dynamic padding to the
batch's longest sentence), runs the forward pass and copies the logits out per sentence.

Inputs: --inputs FILE.bin holds int32 arrays; --index FILE.json lists per sentence [offset, length]: at
offset come tokenIds, softPositions, segmentIds, branch, anchor (each `length` long).
"""
import argparse
import json
import math
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

MASK_NEGATIVE = -10000.0


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    base = 8 + header_len
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        dtype = {"F32": np.float32, "F16": np.float16}.get(entry["dtype"])
        if dtype is None:
            continue
        arr = np.frombuffer(raw, dtype=dtype, count=(end - start) // np.dtype(dtype).itemsize, offset=base + start)
        out[name] = torch.from_numpy(arr.astype(np.float32).reshape(entry["shape"]))
    return out


class BertTokenClassifier(torch.nn.Module):
    def __init__(self, config, w):
        super().__init__()
        self.h = config["hiddenSize"]
        self.nh = config["numHeads"]
        self.hd = self.h // self.nh
        self.eps = config["layerNormEps"]
        self.layers = config["numLayers"]
        self.w = w

    def ln(self, x, prefix):
        return F.layer_norm(x, (self.h,), self.w[prefix + ".weight"], self.w[prefix + ".bias"], self.eps)

    def lin(self, x, prefix):
        return F.linear(x, self.w[prefix + ".weight"], self.w[prefix + ".bias"])

    def forward(self, ids, pos, seg, mask):
        w = self.w
        b, s = ids.shape
        x = (
            F.embedding(ids, w["bert.embeddings.word_embeddings.weight"])
            + F.embedding(pos, w["bert.embeddings.position_embeddings.weight"])
            + F.embedding(seg, w["bert.embeddings.token_type_embeddings.weight"])
        )
        x = self.ln(x, "bert.embeddings.LayerNorm")
        mask4 = mask.unsqueeze(1)
        scale = 1.0 / math.sqrt(self.hd)
        for i in range(self.layers):
            p = f"bert.encoder.layer.{i}."

            def heads(t):
                return t.view(b, s, self.nh, self.hd).transpose(1, 2)

            q = heads(self.lin(x, p + "attention.self.query"))
            k = heads(self.lin(x, p + "attention.self.key"))
            v = heads(self.lin(x, p + "attention.self.value"))
            scores = torch.matmul(q, k.transpose(-1, -2)) * scale + mask4
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, s, self.h)
            x = self.ln(self.lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            inter = F.gelu(self.lin(x, p + "intermediate.dense"))
            x = self.ln(self.lin(inter, p + "output.dense") + x, p + "output.LayerNorm")
        return self.lin(x, "classifier")


class Inputs:
    def __init__(self, bin_path, index_path):
        self.data = np.fromfile(bin_path, dtype="<i4")
        self.index = json.load(open(index_path))

    def arrays(self, i):
        off, n = self.index[i]
        d = self.data
        return d[off : off + n], d[off + n : off + 2 * n], d[off + 2 * n : off + 3 * n], d[off + 3 * n : off + 4 * n], d[off + 4 * n : off + 5 * n]

    def batch(self, indices):
        s = max(self.index[i][1] for i in indices)
        bsz = len(indices)
        ids = np.zeros((bsz, s), dtype=np.int64)
        pos = np.zeros((bsz, s), dtype=np.int64)
        seg = np.zeros((bsz, s), dtype=np.int64)
        mask = np.full((bsz, s, s), MASK_NEGATIVE, dtype=np.float32)
        for r, i in enumerate(indices):
            tok, soft, segment, branch, anchor = self.arrays(i)
            n = len(tok)
            ids[r, :n] = tok
            pos[r, :n] = soft
            seg[r, :n] = segment
            # The sentence tree's visibility rule (src/domain isVisible), vectorised.
            bi, bj = branch[:, None], branch[None, :]
            ai, aj = anchor[:, None], anchor[None, :]
            visible = ((bi < 0) & (bj < 0)) | ((bi >= 0) & (bi == bj)) | ((ai >= 0) & (ai == aj) & ((bi < 0) != (bj < 0)))
            mask[r, :n, :n] = np.where(visible, 0.0, MASK_NEGATIVE)
            mask[r, n:, 0] = 0.0  # padding rows see the first token, as in writeAdditiveMask
        return (torch.from_numpy(ids), torch.from_numpy(pos), torch.from_numpy(seg), torch.from_numpy(mask)), s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    config = json.load(open(args.config))
    model = BertTokenClassifier(config, read_safetensors(args.weights)).eval()
    inputs = Inputs(args.inputs, args.index)
    num_labels = model.w["classifier.weight"].shape[0]

    def run(indices):
        tensors, s = inputs.batch(indices)
        with torch.inference_mode():
            logits = model(*tensors)
        out = logits.numpy()
        return [out[r, : inputs.index[i][1]].copy() for r, i in enumerate(indices)]

    run(list(range(min(4, len(inputs.index)))))  # warm-up
    reply = lambda obj: (sys.stdout.write(json.dumps(obj) + "\n"), sys.stdout.flush())
    reply({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(), "labels": num_labels})
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.get("cmd")
        if cmd == "run":
            times = []
            t0 = time.perf_counter()
            for batch in msg["batches"]:
                t = time.perf_counter()
                run(batch)
                times.append((time.perf_counter() - t) * 1000)
            reply({"batchMs": times, "totalMs": (time.perf_counter() - t0) * 1000})
        elif cmd == "logits":
            with open(msg["out"], "wb") as f:
                for piece in run(msg["indices"]):
                    f.write(piece.astype("<f4").tobytes())
            reply({"ok": True})
        elif cmd == "matmul":
            n, runs = msg.get("n", 2048), msg.get("runs", 5)
            a = torch.rand(n, n) - 0.5
            torch.matmul(a, a)
            best = math.inf
            for _ in range(runs):
                t = time.perf_counter()
                torch.matmul(a, a)
                best = min(best, time.perf_counter() - t)
            reply({"gflops": 2 * n**3 / best / 1e9})
        elif cmd == "rss":
            reply({"maxRssKb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
        elif cmd == "quit":
            reply({"bye": True})
            return
        else:
            reply({"error": f"unknown command {cmd}"})


if __name__ == "__main__":
    main()
