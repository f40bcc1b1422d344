"""PyTorch doing `spangrad evaluate`'s work the way ferret does it, for side-by-side benchmarks
(`spangrad bench-evaluate --pytorch PYTHON` runs this script and prints its row beside
spangrad's; it also runs alone).

The model and the synthetic pairs are those of bench_pytorch.py (random weights, 16 question
tokens, ids spread over the vocabulary). Pairs are evaluated one at a time, as ferret's
Benchmark.evaluate_explanations does, each by every method:

  explanations  the gradient of start[s] + end[e] (argmax of each over the context) with respect
                to inputs_embeds, weights frozen: onehot-norm (||G E^T|| by the Gram identity),
                grad-x-input, grad-norm (one backward each, as ferret's explainers each run
                their own), integrated-gradients from the pad embedding in --steps points and
                smoothgrad with --samples noisy copies, both in batches of 8 (Captum's
                internal_batch_size);
  perturbations comprehensiveness and sufficiency at k = 10..100 % per method and per random
                ranking, and leave-one-out (once per pair, which ferret's taucorr_loo repeats
                per explanation), each input replaced by the mask id at the removed positions,
                forwards without gradients in batches of 8 (ferret's helper batch size).

It prints one JSON line: seconds per pair, the seconds of the explanations and of the
perturbations, the forwards run, and forwards per second.

    python tools/reference/bench_evaluate_pytorch.py --preset bert-base --pairs 2 --seq-len 384
"""

import argparse
import json
import math
import time

from bench_pytorch import QUESTION_TOKENS, VOCAB, build

BATCH = 8
MASK_ID = 103


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="bert-base")
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--warm-up", type=int, default=1, help="untimed pairs first")
    p.add_argument("--seq-len", type=int, default=384)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--random-orders", type=int, default=5)
    p.add_argument("--metrics", default="comprehensiveness,sufficiency,loo")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    return p.parse_args()


def main():
    args = parse()
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, embeddings = build(args.preset, device)
    metrics = set(args.metrics.split(","))
    t, vocab = args.seq_len, VOCAB[args.preset]
    gram = (embeddings.t() @ embeddings).float()
    types_kw = args.preset == "bert-base"
    context = list(range(QUESTION_TOKENS + 2, t - 1))
    eligible = list(range(1, QUESTION_TOKENS + 1)) + context

    def forward(inputs, types, grad=False):
        kwargs = {"token_type_ids": types.expand(inputs.shape[0], -1)} if types_kw else {}
        if grad:
            return model(inputs_embeds=inputs, **kwargs)
        with torch.no_grad():
            return model(input_ids=inputs, **kwargs)

    def target(out):
        start, end = out.start_logits, out.end_logits
        s = context[0] + start[:, context].argmax(-1)
        e = context[0] + end[:, context].argmax(-1)
        rows = torch.arange(start.shape[0], device=device)
        return start[rows, s].sum() + end[rows, e].sum()

    def grads(embeds, types):
        embeds = embeds.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(target(forward(embeds, types, grad=True)), embeds)
        return g

    def explain(method, ids, types):
        x = embeddings[ids].unsqueeze(0)
        if method in ("onehot-norm", "grad-x-input", "grad-norm"):
            g = grads(x, types)[0].float()
            if method == "onehot-norm":
                return ((g @ gram) * g).sum(-1).clamp_min(0).sqrt()
            if method == "grad-x-input":
                return (g * x[0].float()).sum(-1)
            return g.norm(dim=-1)
        if method == "integrated-gradients":
            base = embeddings[torch.zeros_like(ids)].unsqueeze(0)
            alphas = [(i + 0.5) / args.steps for i in range(args.steps)]
            total = torch.zeros_like(x[0], dtype=torch.float)
            for i in range(0, len(alphas), BATCH):
                a = torch.tensor(alphas[i:i + BATCH], device=device).view(-1, 1, 1)
                total += grads(base + a * (x - base), types).float().sum(0)
            return ((x[0] - base[0]).float() * total / args.steps).sum(-1)
        total = torch.zeros(t, device=device)
        for i in range(0, args.samples, BATCH):
            n = min(BATCH, args.samples - i)
            noisy = x + 0.1 * torch.randn((n,) + x.shape[1:], device=device)
            total += grads(noisy, types).float().norm(dim=-1).sum(0)
        return total / args.samples

    def probabilities(inputs, types, s, e):
        out = []
        for i in range(0, len(inputs), BATCH):
            o = forward(torch.stack(inputs[i:i + BATCH]), types)
            keep = torch.zeros(t, dtype=torch.bool, device=device)
            keep[context] = True
            keep[0] = True
            st = o.start_logits.masked_fill(~keep, -10000.0).softmax(-1)
            en = o.end_logits.masked_fill(~keep, -10000.0).softmax(-1)
            out.extend((st[:, s] * en[:, e]).tolist())
        return out

    def masked(ids, positions):
        x = ids.clone()
        if positions:
            x[positions] = MASK_ID
        return x

    methods = ["onehot-norm", "grad-x-input", "grad-norm", "integrated-gradients", "smoothgrad"]
    explain_s = perturb_s = 0.0
    forwards = 0
    start_all = time.perf_counter()
    # Pairs -warm_up..-1 warm up (not timed).
    for k in range(-args.warm_up, args.pairs):
        if k == 0:
            explain_s = perturb_s = 0.0
            forwards = 0
            start_all = time.perf_counter()
        ids = torch.tensor([1000 + (i * 7919 + (k % 1000) * 104729) % (vocab - 1000) for i in range(t)],
                           device=device)
        types = torch.tensor([[int(i > QUESTION_TOKENS + 1) for i in range(t)]], device=device)
        clock = time.perf_counter()
        scores = [explain(m, ids, types) for m in methods]
        if device.type == "cuda":
            torch.cuda.synchronize()
        explain_s += time.perf_counter() - clock
        clock = time.perf_counter()
        with torch.no_grad():
            o = forward(ids.unsqueeze(0), types)
        s = context[0] + int(o.start_logits[0, context].argmax())
        e = context[0] + int(o.end_logits[0, context].argmax())
        rankings = [sorted(eligible, key=lambda i, sc=sc: (-float(sc[i]), i)) for sc in scores]
        g = torch.Generator().manual_seed(k % 1000)
        rankings += [[eligible[j] for j in torch.randperm(len(eligible), generator=g).tolist()]
                     for _ in range(args.random_orders)]
        inputs = [ids]
        n = len(eligible)
        for r in rankings:
            for kk in range(10, 101, 10):
                top = math.ceil(kk * n / 100)
                if "comprehensiveness" in metrics:
                    inputs.append(masked(ids, r[:top]))
                if "sufficiency" in metrics:
                    inputs.append(masked(ids, r[top:]))
        if "loo" in metrics:
            inputs += [masked(ids, [i]) for i in eligible]
        probabilities(inputs, types, s, e)
        if device.type == "cuda":
            torch.cuda.synchronize()
        forwards += len(inputs)
        perturb_s += time.perf_counter() - clock
    total = time.perf_counter() - start_all
    print(json.dumps({
        "method": "ferret-style loop, batches of 8",
        "s_per_pair": total / args.pairs, "explain_s": explain_s, "perturb_s": perturb_s,
        "forwards": forwards, "forwards_per_s": forwards / perturb_s,
        "versions": f"torch {torch.__version__}",
    }))


if __name__ == "__main__":
    main()
