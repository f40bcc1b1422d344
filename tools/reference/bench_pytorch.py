"""PyTorch doing spangrad's work, for side-by-side benchmarks (`spangrad bench --pytorch PYTHON`
runs this script and prints its rows beside spangrad's; it also runs alone).

Same random-weight architecture as `spangrad bench --preset` (HF transformers'
BertForQuestionAnswering / DistilBertForQuestionAnswering, hidden 768, 12 heads, intermediate 3072,
vocabulary 30,522) and the same synthetic batch (16 question tokens; ids spread over the vocabulary).
Methods, each the whole explanation of a batch (forward, span, backward, per-token norm, max-normalise):

  seed       NeuralQA's method: a one-hot [batch, tokens, vocab] input times E, gradient to the
             one-hot (weights frozen, as the seed's GradientTape watches only the one-hot), its
             L2 norm over the vocabulary.
  best-norm  PyTorch's best plain method: frozen weights, gradient to inputs_embeds = E[ids],
             then ||G E^T|| per token.
  best-gram  the same with the Gram identity ||G E^T||^2 = G (E^T E) G^T (E^T E precomputed).

Each method runs in a fresh process; it prints one JSON line: seconds per batch (median of
--iters after a warm-up), peak extra memory over the use before the warm-up, and the versions
used. CUDA: max_memory_allocated. CPU: the peak resident set (VmHWM after resetting it through
/proc/self/clear_refs), twice: as the timed run had it (peak_extra_rss_mib), and in a second,
untimed process where glibc unmaps every freed block over 64 KiB (MALLOC_MMAP_THRESHOLD_), so
that the resident set follows live bytes (peak_extra_mib).

    python tools/reference/bench_pytorch.py --preset bert-base --batch 8 --seq-len 384 --threads 2
    python tools/reference/bench_pytorch.py --device cuda --dtype bf16 --batch 64 --methods seed,best-gram
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

QUESTION_TOKENS = 16
METHODS = ("seed", "best-norm", "best-gram")


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="distilbert-base", choices=["distilbert-base", "bert-base"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=384)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"], help="bf16: autocast (CUDA)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args()


def rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_rss_peak():
    # Writing 5 to clear_refs resets the peak resident set (VmHWM) to the current one.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def build(preset, device):
    import torch
    from transformers import BertConfig, BertForQuestionAnswering, DistilBertConfig, DistilBertForQuestionAnswering

    torch.manual_seed(0)
    if preset == "bert-base":
        cfg = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu")
        model = BertForQuestionAnswering(cfg)
        embeddings = model.bert.embeddings.word_embeddings.weight
    else:
        cfg = DistilBertConfig(vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072,
                               max_position_embeddings=512, activation="gelu")
        model = DistilBertForQuestionAnswering(cfg)
        embeddings = model.distilbert.embeddings.word_embeddings.weight
    model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, embeddings


def batch(b, t, vocab, device):
    import torch

    ids = [[1000 + (i * 7919 + k * 104729) % (vocab - 1000) for i in range(t)] for k in range(b)]
    types = [[int(i > QUESTION_TOKENS + 1) for i in range(t)] for _ in range(b)]
    return torch.tensor(ids, device=device), torch.tensor(types, device=device)


def explain(method, model, embeddings, gram, ids, types, preset, autocast):
    import torch

    kwargs = {"token_type_ids": types} if preset == "bert-base" else {}
    if method == "seed":
        leaf = torch.nn.functional.one_hot(ids, embeddings.shape[0]).to(embeddings.dtype).requires_grad_(True)
        inputs = leaf @ embeddings
    else:
        leaf = embeddings[ids].detach().requires_grad_(True)
        inputs = leaf
    with autocast():
        out = model(inputs_embeds=inputs, **kwargs)
    start, end = out.start_logits.float(), out.end_logits.float()
    s, e = start.argmax(-1), end.argmax(-1)
    rows = torch.arange(ids.shape[0], device=ids.device)
    target = start[rows, s].sum() + end[rows, e].sum()
    (grad,) = torch.autograd.grad(target, leaf)
    if method == "seed":
        raw = grad.norm(dim=-1)
    elif method == "best-norm":
        raw = (grad.float() @ embeddings.t()).norm(dim=-1)
    else:
        g = grad.float()
        raw = ((g @ gram) * g).sum(-1).clamp_min(0).sqrt()
    scores = raw / raw.amax(-1, keepdim=True)
    return scores.cpu()


def run_one(args, method):
    import contextlib

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    model, embeddings = build(args.preset, device)
    gram = embeddings.float().t() @ embeddings.float()
    ids, types = batch(args.batch, args.seq_len, embeddings.shape[0], device)

    def autocast():
        if args.dtype == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def once():
        explain(method, model, embeddings, gram, ids, types, args.preset, autocast)
        if cuda:
            torch.cuda.synchronize()

    # The baseline is taken before the warm-up, whose first allocations count, as spangrad's do.
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = rss_kib("VmRSS") * 1024
        reset_rss_peak()
    once()
    times = []
    for _ in range(0 if args.memory_only else args.iters):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if cuda else rss_kib("VmHWM") * 1024
    if args.memory_only:
        print(json.dumps({"peak_extra_mib": max(peak - base, 0) / 2**20}), flush=True)
        return
    attn = getattr(model.config, "_attn_implementation", "default")
    print(json.dumps({
        "framework": "pytorch",
        "method": method,
        "preset": args.preset,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "device": torch.cuda.get_device_name() if cuda else f"cpu, {args.threads} threads",
        "dtype": args.dtype,
        "s_per_batch": statistics.median(times),
        "explanations_per_s": args.batch / statistics.median(times),
        "peak_extra_mib": max(peak - base, 0) / 2**20,
        "versions": f"torch {torch.__version__}, transformers {transformers.__version__}, attention {attn}",
    }), flush=True)


def main():
    args = parse()
    if args.one:
        run_one(args, args.one)
        return
    failed = False
    for method in args.methods.split(","):
        if method not in METHODS:
            sys.exit(f"unknown method {method!r} (one of {', '.join(METHODS)})")
        cmd = [sys.executable, __file__, "--one", method] + sys.argv[1:]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        timed = subprocess.run(cmd, env=env, capture_output=True, text=True)
        sys.stderr.write(timed.stderr)
        if timed.returncode != 0:
            failed = True
            continue
        row = json.loads(timed.stdout.strip().splitlines()[-1])
        if args.device == "cpu":
            row["peak_extra_rss_mib"] = row["peak_extra_mib"]
            live = subprocess.run(cmd + ["--memory-only"], capture_output=True, text=True,
                                  env=dict(env, MALLOC_MMAP_THRESHOLD_=str(64 * 1024)))
            sys.stderr.write(live.stderr)
            if live.returncode != 0:
                failed = True
                continue
            row["peak_extra_mib"] = json.loads(live.stdout.strip().splitlines()[-1])["peak_extra_mib"]
        print(json.dumps(row), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
