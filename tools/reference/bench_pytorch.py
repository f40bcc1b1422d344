"""PyTorch doing spangrad's work, for side-by-side benchmarks (`spangrad bench --pytorch PYTHON`
runs this script and prints its rows beside spangrad's; it also runs alone).

Same random-weight architecture as `spangrad bench --preset` (HF transformers' QA classes, hidden
768, 12 heads, intermediate 3072: bert-base and distilbert-base with the vocabulary of 30,522;
roberta-base, 12 layers, vocabulary 50,265, 514 positions (512 usable), one token type, pad id 1;
xlm-roberta-base, the same with the vocabulary of 250,002) and the same synthetic batch (16 question
tokens; ids spread over the vocabulary). Token types go to bert-base only (RoBERTa's tokenizers
return none); RoBERTa-family position ids are the model's own (from inputs_embeds: padding_idx + 1
onwards, as from unpadded input_ids).
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

The seed's dense one-hot is [batch, tokens, vocab] (int64 from one_hot, then float, then its
gradient): 3.1 GB per 8 x 384 pairs at bert-base, 25 GB at xlm-roberta-base. When a method would
need more than the free memory (MemAvailable and the cgroup's limit, or the GPU's free memory), or
runs out of memory anyway, its line is {"method": ..., "error": "oom", "needed_mib", "free_mib", ...}
without timings, and the other methods still run (exit status 0; other failures exit 1).

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
PRESETS = ("distilbert-base", "bert-base", "roberta-base", "xlm-roberta-base")
VOCAB = {"distilbert-base": 30522, "bert-base": 30522, "roberta-base": 50265, "xlm-roberta-base": 250002}


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="distilbert-base", choices=PRESETS)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=384)
    p.add_argument("--lengths", help="each pair's length, comma-separated (at most --seq-len): the "
                   "batch is padded to the longest, with an attention mask, as HF pads")
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
    if preset in ("roberta-base", "xlm-roberta-base"):
        from transformers import RobertaConfig, RobertaForQuestionAnswering, XLMRobertaConfig, XLMRobertaForQuestionAnswering

        config_cls, model_cls = (
            (RobertaConfig, RobertaForQuestionAnswering)
            if preset == "roberta-base"
            else (XLMRobertaConfig, XLMRobertaForQuestionAnswering)
        )
        cfg = config_cls(vocab_size=VOCAB[preset], hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                         bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5, hidden_act="gelu")
        model = model_cls(cfg)
        embeddings = model.roberta.embeddings.word_embeddings.weight
    elif preset == "bert-base":
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


def lengths(args):
    """Each pair's length: --lengths, else --batch pairs of --seq-len."""
    if not args.lengths:
        return [args.seq_len] * args.batch
    lens = [int(x) for x in args.lengths.split(",")]
    if len(lens) != args.batch or not all(QUESTION_TOKENS + 4 <= n <= args.seq_len for n in lens):
        sys.exit(f"--lengths needs {args.batch} lengths between {QUESTION_TOKENS + 4} and {args.seq_len}")
    return lens


def batch(lens, vocab, device):
    """The ids and token types padded to the longest pair, and the attention mask (None when no
    pair is padded: HF passes none then)."""
    import torch

    t = max(lens)
    ids = [[1000 + (i * 7919 + k * 104729) % (vocab - 1000) for i in range(t)] for k in range(len(lens))]
    types = [[int(i > QUESTION_TOKENS + 1) for i in range(t)] for _ in lens]
    mask = torch.tensor([[int(i < n) for i in range(t)] for n in lens], device=device)
    return (torch.tensor(ids, device=device), torch.tensor(types, device=device),
            None if min(lens) == t else mask)


def explain(method, model, embeddings, gram, ids, types, mask, preset, autocast):
    import torch

    kwargs = {"token_type_ids": types} if preset == "bert-base" else {}
    if mask is not None:
        kwargs["attention_mask"] = mask
    if method == "seed":
        leaf = torch.nn.functional.one_hot(ids, embeddings.shape[0]).to(embeddings.dtype).requires_grad_(True)
        inputs = leaf @ embeddings
    else:
        leaf = embeddings[ids].detach().requires_grad_(True)
        inputs = leaf
    with autocast():
        out = model(inputs_embeds=inputs, **kwargs)
    start, end = out.start_logits.float(), out.end_logits.float()
    if mask is not None:
        start = start.masked_fill(mask == 0, float("-inf"))
        end = end.masked_fill(mask == 0, float("-inf"))
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
    if mask is not None:
        raw = raw * mask
    scores = raw / raw.amax(-1, keepdim=True)
    return scores.cpu()


def free_bytes(device):
    """Memory this process can still take: the GPU's free memory, or on the CPU MemAvailable
    bounded by the cgroup's limit."""
    import torch

    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    free = meminfo_kib("MemAvailable") * 1024
    for limit_file, used_file in [("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                  ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                   "/sys/fs/cgroup/memory/memory.usage_in_bytes")]:
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(used_file) as f:
                used = int(f.read().strip())
        except OSError:
            continue
        if limit.isdigit():
            free = min(free, int(limit) - used)
        break
    return free


def meminfo_kib(field):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def seed_bytes(batch, seq_len, vocab):
    """Peak of the seed's one-hot: one_hot's int64, its float copy, then float and gradient."""
    return 12 * batch * seq_len * vocab


def row_head(args, method, device):
    import torch
    import transformers

    return {
        "framework": "pytorch",
        "method": method,
        "preset": args.preset,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, {args.threads} threads",
        "dtype": args.dtype,
        "versions": f"torch {torch.__version__}, transformers {transformers.__version__}",
    }


def oom_row(args, method, device, needed, free, detail):
    return {**row_head(args, method, device), "error": "oom", "needed_mib": needed / 2**20,
            "free_mib": free / 2**20, "detail": detail}


class NotEnoughMemory(Exception):
    pass


def run_one(args, method):
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    needed = seed_bytes(args.batch, args.seq_len, VOCAB[args.preset]) if method == "seed" else 0
    oom = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), MemoryError)
    try:
        measure(args, method, device, needed)
    except NotEnoughMemory as e:
        print(json.dumps(oom_row(args, method, device, needed, e.args[0], "the one-hot would not fit")), flush=True)
    except oom as e:
        print(json.dumps(oom_row(args, method, device, needed, free_bytes(device), first_line(e))), flush=True)
    except RuntimeError as e:
        if "can't allocate memory" not in str(e) and "out of memory" not in str(e):
            raise
        print(json.dumps(oom_row(args, method, device, needed, free_bytes(device), first_line(e))), flush=True)


def first_line(e):
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def measure(args, method, device, needed):
    import contextlib

    import torch
    import transformers

    cuda = device.type == "cuda"
    model, embeddings = build(args.preset, device)
    gram = embeddings.float().t() @ embeddings.float()
    free = free_bytes(device)
    if needed > free:
        raise NotEnoughMemory(free)
    ids, types, mask = batch(lengths(args), embeddings.shape[0], device)

    def autocast():
        if args.dtype == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def once():
        explain(method, model, embeddings, gram, ids, types, mask, args.preset, autocast)
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
        if timed.returncode == -9:
            # SIGKILL: most likely the kernel's OOM killer.
            print(json.dumps({"framework": "pytorch", "method": method, "preset": args.preset,
                              "batch": args.batch, "seq_len": args.seq_len, "dtype": args.dtype,
                              "error": "oom", "detail": "killed by SIGKILL (out of memory?)"}), flush=True)
            continue
        if timed.returncode != 0:
            failed = True
            continue
        row = json.loads(timed.stdout.strip().splitlines()[-1])
        if "error" in row:
            print(json.dumps(row), flush=True)
            continue
        if args.device == "cpu":
            row["peak_extra_rss_mib"] = row["peak_extra_mib"]
            live = subprocess.run(cmd + ["--memory-only"], capture_output=True, text=True,
                                  env=dict(env, MALLOC_MMAP_THRESHOLD_=str(64 * 1024)))
            sys.stderr.write(live.stderr)
            if live.returncode != 0:
                failed = True
                continue
            live_row = json.loads(live.stdout.strip().splitlines()[-1])
            if "error" in live_row:
                print(json.dumps(live_row), flush=True)
                continue
            row["peak_extra_mib"] = live_row["peak_extra_mib"]
        print(json.dumps(row), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
