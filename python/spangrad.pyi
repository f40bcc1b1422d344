"""Gradient explanations for BERT and DistilBERT extractive question answering."""

from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

Pair = Mapping[str, Any]
"""{"question": str, "context": str, "id"?: JSON value, "answer"?: str, "answer_start"?: int}"""

class Explainer:
    """A QA checkpoint loaded once (on one device, or one copy per device of a list).

    model: a local checkpoint directory or a Hugging Face Hub model id (resolved through the hub
        cache; offline with HF_HUB_OFFLINE=1).
    device: "cpu", "cuda", "cuda:N" or a list such as "cuda:0,cuda:1".
    dtype: "f32", "bf16" or "f16" (default: bf16 on a GPU, f32 on the CPU).
    span: "best" (the transformers pipeline's span) or "argmax" (the seed's).
    seed_compat: reproduce NeuralQA's off-by-one end target.
    max_length: tokens per window (default 384, or the model's limit if lower).
    max_batch_tokens: padded tokens per forward/backward pass (default: fit the memory).
    handle_impossible_answer: SQuAD 2.0's "no answer", as the transformers pipeline's option.
    method: "onehot-norm" (default), "grad-x-input", "grad-norm", "integrated-gradients" or
        "smoothgrad".

    Raises FileNotFoundError (no such model directory or file), ValueError (an invalid option or
    checkpoint), OSError (the hub), RuntimeError (the device).
    """

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        dtype: Optional[Literal["f32", "bf16", "f16"]] = None,
        span: Literal["best", "argmax"] = "best",
        seed_compat: bool = False,
        max_length: Optional[int] = None,
        max_batch_tokens: Optional[int] = None,
        method: Optional[
            Literal["onehot-norm", "grad-x-input", "grad-norm", "integrated-gradients", "smoothgrad"]
        ] = None,
        handle_impossible_answer: bool = False,
    ) -> None: ...
    @staticmethod
    def preset(
        preset: Literal["distilbert-base", "bert-base", "roberta-base", "xlm-roberta-base"],
        device: str = "cpu",
        dtype: Optional[Literal["f32", "bf16", "f16"]] = None,
        max_batch_tokens: Optional[int] = None,
    ) -> "Explainer":
        """A random-weight model of a standard shape with a made-up vocabulary (w5, w6, ...: one
        token per word), for benchmarks."""
    def explain(
        self, pairs: Sequence[Pair], on_error: Literal["return", "raise"] = "return"
    ) -> List[Dict[str, Any]]:
        """One dict per pair, in order, equal to `spangrad explain --format json`; a pair that
        cannot be explained gives {"index", "id", "error"} (on_error="raise": ValueError).
        Runs with the GIL released."""
    def explain_arrays(
        self, questions: Sequence[str], contexts: Sequence[str]
    ) -> Dict[str, Union[npt.NDArray[np.float32], npt.NDArray[np.int64], List[Any]]]:
        """Arrays for dataframes: "scores" float32 [n, longest] (zero past "lengths"),
        "lengths", "answer_start", "answer_end", "answer_char_start", "answer_char_end" int64 [n]
        (-1 when none or failed), "answer" and "error" lists, "tokens" a list of lists."""
    @property
    def model(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def max_length(self) -> int: ...

def set_threads(n: int) -> None:
    """At most n compute threads; call before the first explanation."""
