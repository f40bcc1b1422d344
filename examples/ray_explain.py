"""Explains a corpus with spangrad on a Ray cluster (or a local Ray) through Ray Data.

Ray Data reads JSON lines or Parquet with `question`, `context` and an optional `id`; a pool of
actors each holds one `spangrad.Explainer` (the model is loaded once per actor, on its own GPU
with --gpus-per-actor 1), explains batches, and the results are written:

- to a `.jsonl` file: one line per pair in the input order, each the explanation exactly as
  `spangrad explain --format json` writes it (or `{"id", "error"}` for a pair that cannot be
  explained);
- to a directory: Parquet, one row per pair keyed by `id`, the explanation as a JSON string.

    python examples/ray_explain.py --model DIR --input pairs.jsonl --output out.jsonl --actors 2
    python examples/ray_explain.py --address auto --model DIR --input s3://bucket/pairs/ \\
        --output s3://bucket/explained/ --actors 8 --gpus-per-actor 1 --device cuda

`--model preset:distilbert-base` loads a random-weight model with a made-up vocabulary (for
scaling measurements: pairs of words w5, w6, ... have one token per word).
"""

import argparse
import json
import time

import ray


class ExplainBatch:
    """One actor: the model, loaded once; a batch of pairs in, their explanations out."""

    def __init__(self, model, device, threads, options):
        import spangrad

        if threads:
            spangrad.set_threads(threads)
        if model.startswith("preset:"):
            self.explainer = spangrad.Explainer.preset(model[len("preset:"):], device=device)
        else:
            self.explainer = spangrad.Explainer(model, device=device, **options)

    def __call__(self, batch):
        ids = batch["id"].tolist() if "id" in batch else [None] * len(batch)
        ids = [None if isinstance(i, float) and i != i else i for i in ids]  # NaN: no id
        pairs = [
            {"id": i, "question": q, "context": c}
            for i, q, c in zip(ids, batch["question"].tolist(), batch["context"].tolist())
        ]
        results = self.explainer.explain(pairs)
        rows = [r.to_dict() for r in results]
        for row in rows:
            # A failure's "index" counts within this batch only: it keeps its id, error and field.
            row.pop("index", None)
        return {
            "id": ids,
            "answer": [r["answer"]["text"] if "answer" in r else None for r in rows],
            "error": [r.get("error") for r in rows],
            "explanation": [json.dumps(r, ensure_ascii=False) for r in rows],
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint directory, hub id or preset:NAME")
    parser.add_argument("--input", required=True, help="JSON lines or Parquet (file or directory)")
    parser.add_argument("--input-format", choices=["json", "parquet"], default=None,
                        help="default: parquet for a path ending in .parquet, else json")
    parser.add_argument("--output", required=True, help="a .jsonl file, or a Parquet directory")
    parser.add_argument("--actors", type=int, default=2, help="actors, each with its own model")
    parser.add_argument("--gpus-per-actor", type=float, default=0)
    parser.add_argument("--cpus-per-actor", type=float, default=1,
                        help="CPUs per actor, also its compute threads")
    parser.add_argument("--device", default="cpu", help="each actor's device: cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per actor call")
    parser.add_argument("--address", default=None,
                        help="an existing cluster (auto, or ray://host:10001); default: a local Ray")
    parser.add_argument("--options", default="{}",
                        help='Explainer arguments as JSON, e.g. \'{"method": "grad-x-input"}\'')
    args = parser.parse_args()

    if args.address:
        ray.init(address=args.address)
    else:
        # Room for the actors and for the read and write tasks beside them.
        needed = args.actors * args.cpus_per_actor + 2
        ray.init(num_cpus=int(needed + 0.999), include_dashboard=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True

    parquet = (args.input_format or
               ("parquet" if args.input.rstrip("/").endswith(".parquet") else "json")) == "parquet"
    pairs = (ray.data.read_parquet if parquet else ray.data.read_json)(args.input)
    explained = pairs.map_batches(
        ExplainBatch,
        fn_constructor_kwargs={
            "model": args.model,
            "device": args.device,
            "threads": int(args.cpus_per_actor),
            "options": json.loads(args.options),
        },
        batch_size=args.batch_size,
        batch_format="pandas",
        concurrency=args.actors,
        num_cpus=args.cpus_per_actor,
        num_gpus=args.gpus_per_actor,
    )

    start = time.perf_counter()
    count = 0
    if args.output.endswith(".jsonl"):
        with open(args.output, "w", encoding="utf-8") as out:
            for batch in explained.iter_batches(batch_format="pandas"):
                for line in batch["explanation"]:
                    out.write(line + "\n")
                count += len(batch)
    else:
        explained.write_parquet(args.output)
        count = pairs.count()
    seconds = time.perf_counter() - start
    print(f"{count} pairs in {seconds:.1f} s: {count / seconds:.2f} pairs/s "
          f"({args.actors} actors)")


if __name__ == "__main__":
    main()
