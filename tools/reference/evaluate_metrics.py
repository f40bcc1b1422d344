"""Recomputes `spangrad evaluate`'s metrics with Hugging Face transformers, from the scores and
random rankings spangrad gave, and compares them with spangrad's.

For each evaluated pair it tokenises the pair itself (the transformers QA pipeline's way:
`truncation="only_second"`, `max_length`, `stride`, overflowing windows), takes the window
spangrad explained, runs the model on the unperturbed and on every perturbed input
(AutoModelForQuestionAnswering, `input_ids` with the mask token, or the pad token where the
vocabulary has none, at the removed positions; `token_type_ids` only where the tokenizer's
`model_input_names` has them), scores the explained span with the pipeline's softmaxes, and
computes:

- `comprehensiveness[k] = p - p(top n_k eligible tokens masked)`, k = 10..100 %,
  n_k = ceil(k * N / 100), the ranking by score, highest first, ties to the earlier position;
- `sufficiency[k] = p - p(every other eligible token masked)`;
- AOPCs (means over k), the leave-one-out drops `p - p(token i masked)`, and
  `loo_kendall_tau` (scipy's Kendall tau-b of the scores and the drops; a random ranking is
  scored by rank). tau is a step function of the drops: two drops within float noise of each
  other can swap between any two implementations. So the check compares the drops, and
  spangrad's tau with scipy's on spangrad's scores and drops (tau from the reference's own drops
  is printed, as information);
- the random baseline: the same for spangrad's random rankings, averaged (tau over the orders
  where it is defined).

One model:
    python tools/reference/evaluate_metrics.py --model DIR --pairs pairs.jsonl \
        --evaluations out.jsonl --max-length 384 --doc-stride 128 [--out expected.json]
(`out.jsonl` is `spangrad evaluate`'s output for `pairs.jsonl` with the same --max-length and
--doc-stride; failed lines are skipped.) It prints the largest difference per metric and exits
with 1 when one is over --tolerance (1e-4).

The test cases (from the repository root):
    SPANGRAD_EVALUATIONS_OUT=/tmp/evals cargo test --test evaluate
    python tools/reference/evaluate_metrics.py --cases tests/fixtures/evaluate/cases.json \
        --evaluations /tmp/evals --out tests/fixtures/evaluate/expected
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import scipy.stats
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

PERCENTS = list(range(10, 101, 10))
BATCH = 64


def top_count(k, n):
    return (k * n + 99) // 100


class Model:
    def __init__(self, directory):
        self.tok = AutoTokenizer.from_pretrained(directory)
        self.model = AutoModelForQuestionAnswering.from_pretrained(directory).eval()
        self.types = "token_type_ids" in self.tok.model_input_names
        mask = self.tok.mask_token_id
        self.mask = mask if mask is not None else self.tok.pad_token_id

    def window(self, question, context, max_length, stride, index):
        enc = self.tok(question, context, truncation="only_second", max_length=max_length,
                       stride=stride, return_overflowing_tokens=stride > 0,
                       return_token_type_ids=True)
        if stride > 0:
            ids, types = enc["input_ids"][index], enc["token_type_ids"][index]
            seq = enc.sequence_ids(index)
        else:
            assert index == 0
            ids, types, seq = enc["input_ids"], enc["token_type_ids"], enc.sequence_ids()
        return ids, types, seq

    def logits(self, inputs, types):
        """Start and end logits of each id list (all of one length), in batches."""
        out = []
        for i in range(0, len(inputs), BATCH):
            ids = torch.tensor(inputs[i:i + BATCH])
            kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            if self.types:
                kwargs["token_type_ids"] = torch.tensor([types] * len(ids))
            with torch.no_grad():
                o = self.model(**kwargs)
            out.extend(zip(o.start_logits.double().numpy(), o.end_logits.double().numpy()))
        return out


def pipeline_softmax(logits, seq):
    """The QA pipeline's: context tokens and the first token, every other at -10000."""
    keep = np.array([s == 1 or i == 0 for i, s in enumerate(seq)])
    x = np.where(keep, logits, -10000.0)
    e = np.exp(x - x.max())
    return e / e.sum()


def masked(ids, positions, mask):
    out = list(ids)
    for i in positions:
        out[i] = mask
    return out


def metrics(p, prob, ids, ranking, mask, wanted, scores_by_pos, loo):
    n = len(ranking)
    out = {}
    if "comprehensiveness" in wanted:
        c = [p - prob(masked(ids, ranking[:top_count(k, n)], mask)) for k in PERCENTS]
        out["comprehensiveness"] = c
        out["aopc_comprehensiveness"] = float(np.mean(c))
    if "sufficiency" in wanted:
        s = [p - prob(masked(ids, ranking[top_count(k, n):], mask)) for k in PERCENTS]
        out["sufficiency"] = s
        out["aopc_sufficiency"] = float(np.mean(s))
    if "loo" in wanted:
        out["loo_kendall_tau"] = kendall(scores_by_pos, [p - q for q in loo])
    return out


def kendall(scores, drops):
    """scipy's tau-b; None where it is undefined (fewer than two, or either side constant)."""
    if len(scores) < 2 or len(set(scores)) < 2 or len(set(drops)) < 2:
        return None
    tau = scipy.stats.kendalltau(scores, drops).statistic
    return None if math.isnan(tau) else float(tau)


def mean_metrics(all_metrics):
    out = {}
    for name in ("comprehensiveness", "sufficiency"):
        if name in all_metrics[0]:
            out[name] = [float(np.mean([m[name][k] for m in all_metrics])) for k in range(10)]
            out["aopc_" + name] = float(np.mean(out[name]))
    if "loo_kendall_tau" in all_metrics[0]:
        taus = [m["loo_kendall_tau"] for m in all_metrics if m["loo_kendall_tau"] is not None]
        out["loo_kendall_tau"] = float(np.mean(taus)) if taus else None
    return out


def reference(model, pair, evaluation, max_length, stride, wanted):
    index = (evaluation.get("window") or {}).get("index", 0)
    ids, types, seq = model.window(pair["question"], pair["context"], max_length, stride, index)
    eligible = [i for i, s in enumerate(seq) if s is not None]
    s, e = evaluation["answer"]["token_start"], evaluation["answer"]["token_end"]
    cache = {}

    def prob_many(inputs):
        todo = [x for x in dict.fromkeys(map(tuple, inputs)) if x not in cache]
        for x, (start, end) in zip(todo, model.logits([list(t) for t in todo], types)):
            cache[x] = pipeline_softmax(start, seq)[s] * pipeline_softmax(end, seq)[e]
        return [cache[tuple(x)] for x in inputs]

    def prob(x):
        return prob_many([x])[0]

    # Every input of the pair in one go (batched), then read from the cache.
    rankings = []
    for m in evaluation["methods"]:
        score = dict(zip(eligible, m["scores"]))
        rankings.append(sorted(eligible, key=lambda i: (-score[i], i)))
    randoms = (evaluation.get("random") or {}).get("rankings", [])
    inputs = [ids] + [masked(ids, [i], model.mask) for i in eligible]
    for r in rankings + randoms:
        n = len(r)
        inputs += [masked(ids, r[:top_count(k, n)], model.mask) for k in PERCENTS]
        inputs += [masked(ids, r[top_count(k, n):], model.mask) for k in PERCENTS]
    prob_many(inputs)

    p = prob(ids)
    loo = [prob(masked(ids, [i], model.mask)) for i in eligible]
    out = {"id": evaluation.get("id"), "window": index, "eligible": eligible, "probability": p,
           "methods": {}}
    if "loo" in wanted:
        out["loo_drops"] = [p - q for q in loo]
    for m, ranking in zip(evaluation["methods"], rankings):
        result = metrics(p, prob, ids, ranking, model.mask, wanted, m["scores"], loo)
        result["ranking"] = ranking
        out["methods"][m["method"]] = result
    if randoms:
        each = []
        for r in randoms:
            rank_score = {i: len(r) - k for k, i in enumerate(r)}
            each.append(metrics(p, prob, ids, r, model.mask, wanted,
                                [rank_score[i] for i in eligible], loo))
        out["random"] = mean_metrics(each)
    return out


def compare(evaluation, want, worst):
    """The largest differences between spangrad's values and the reference's. tau is a step
    function of the drops (two drops within float noise of each other can swap), so spangrad's
    tau is checked against scipy's on spangrad's own scores and drops, and the drops themselves
    against the reference's; tau from the reference's drops is told as information."""
    def put(name, a, b):
        if a is None or b is None:
            d = 0.0 if a is None and b is None else math.inf
        else:
            d = abs(a - b)
        worst[name] = max(worst.get(name, 0.0), d)

    put("probability", evaluation["probability"], want["probability"])
    if "loo_drops" in want:
        for a, b in zip(evaluation["loo_drops"], want["loo_drops"]):
            put("loo_drops", a, b)
    rows = [(m, want["methods"][m["method"]], m["scores"]) for m in evaluation["methods"]]
    if "random" in want:
        eligible = evaluation["eligible"]
        rank_scores = [[{i: len(r) - k for k, i in enumerate(r)}[i] for i in eligible]
                       for r in evaluation["random"]["rankings"]]
        rows.append((evaluation["random"], want["random"], rank_scores))
    for got, w, scores in rows:
        for name in ("comprehensiveness", "sufficiency"):
            if name in w:
                for a, b in zip(got[name], w[name]):
                    put(name, a, b)
                put("aopc_" + name, got["aopc_" + name], w["aopc_" + name])
        if "loo_kendall_tau" in w:
            drops = evaluation["loo_drops"]
            if scores and isinstance(scores[0], list):  # the random orders: their mean
                taus = [t for t in (kendall(s, drops) for s in scores) if t is not None]
                mine = float(np.mean(taus)) if taus else None
            else:
                mine = kendall(scores, drops)
            put("loo_kendall_tau", got.get("loo_kendall_tau"), mine)
            put("(information) loo_kendall_tau from the reference's drops",
                got.get("loo_kendall_tau"), w["loo_kendall_tau"])


def run_one(model_dir, pairs, evaluations, max_length, stride, wanted):
    model = Model(model_dir)
    results, worst = [], {}
    for pair, evaluation in zip(pairs, evaluations):
        if "error" in evaluation:
            continue
        want = reference(model, pair, evaluation, max_length, stride, wanted)
        compare(evaluation, want, worst)
        results.append(want)
    return results, worst


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def wanted_of(evaluations):
    """The metrics an output holds (those asked of spangrad evaluate)."""
    first = next(e for e in evaluations if "methods" in e)["methods"][0]
    names = {"comprehensiveness", "sufficiency"} & set(first)
    return names | ({"loo"} if "loo_kendall_tau" in first else set())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--pairs")
    ap.add_argument("--evaluations", required=True)
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--doc-stride", type=int, default=128)
    ap.add_argument("--cases")
    ap.add_argument("--out")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    torch.manual_seed(0)
    worst_all = {}
    if args.cases:
        root = Path(args.cases).parent.parent
        out = Path(args.out) if args.out else None
        for case in json.loads(Path(args.cases).read_text()):
            evaluations = read_jsonl(Path(args.evaluations) / f"{case['name']}.jsonl")
            results, worst = run_one(root / case["model"], case["pairs"], evaluations,
                                     case["max_length"], case["doc_stride"], set(case["metrics"]))
            print(case["name"], {k: f"{v:.2e}" for k, v in worst.items()})
            for k, v in worst.items():
                worst_all[k] = max(worst_all.get(k, 0.0), v)
            if out:
                out.mkdir(parents=True, exist_ok=True)
                text = json.dumps({"case": case["name"], "pairs": results}, indent=1)
                (out / f"{case['name']}.json").write_text(text + "\n")
    else:
        pairs = read_jsonl(args.pairs)
        evaluations = read_jsonl(args.evaluations)
        results, worst_all = run_one(args.model, pairs, evaluations, args.max_length,
                                     args.doc_stride, wanted_of(evaluations))
        if args.out:
            Path(args.out).write_text(json.dumps({"pairs": results}, indent=1) + "\n")
    print("largest differences:", {k: f"{v:.2e}" for k, v in worst_all.items()})
    bad = {k: v for k, v in worst_all.items()
           if v > args.tolerance and not k.startswith("(information)")}
    if bad:
        print(f"over the tolerance {args.tolerance}: {bad}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
