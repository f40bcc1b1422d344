"""Gradient explanations for BERT and DistilBERT extractive question answering."""

from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

Pair = Mapping[str, Any]
"""{"question": str, "context": str, "id"?: JSON value, "answer"?: str, "answer_start"?: int}"""

Method = Literal["onehot-norm", "grad-x-input", "grad-norm", "integrated-gradients", "smoothgrad"]

class OptionError(ValueError):
    """An option with a wrong value, alone or with the others."""

    option: str
    """The option at fault: "top_k"."""

def options() -> List[Dict[str, Any]]:
    """Every option: "name", "scope" ("request": per call too; "load": at load only),
    "default", "help", "minimum" and "maximum" (numbers; None where unbounded). The same
    options, names and defaults as `spangrad explain`'s flags and the server's `options`."""

class Explainer:
    """A QA checkpoint loaded once (on one device, or one copy per device of a list).

    model: a local checkpoint directory or a Hugging Face Hub model id (resolved through the hub
        cache; offline with HF_HUB_OFFLINE=1).
    device: "cpu", "cuda", "cuda:N" or a list such as "cuda:0,cuda:1".
    **options: any of options(), by name, with its default; None keeps the default. Those of
        scope "request" can also be given per call to explain() and explain_arrays().

    Raises FileNotFoundError (no such model directory or file), OptionError (a ValueError: an
    invalid option), ValueError (an invalid checkpoint), TypeError (an unknown keyword), OSError
    (the hub), RuntimeError (the device).
    """

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        *,
        span: Literal["best", "argmax"] = "best",
        target: Literal["span", "start", "end"] = "span",
        method: Method = "onehot-norm",
        steps: int = 50,
        baseline: Literal["pad", "zero", "mask"] = "pad",
        samples: int = 20,
        noise_std: float = 0.1,
        seed: int = 0,
        saliency: Literal["gram", "streaming", "dense"] = "gram",
        seed_compat: bool = False,
        max_length: Optional[int] = None,
        max_answer_len: int = 15,
        doc_stride: Optional[int] = None,
        explain_windows: Literal["best", "all"] = "best",
        top_k: int = 1,
        handle_impossible_answer: bool = False,
        max_batch_tokens: Union[int, Literal["auto", "all"]] = "auto",
        memory_limit_mib: Optional[float] = None,
        dtype: Optional[Literal["f32", "bf16", "f16"]] = None,
        max_input_bytes: int = 1048576,
    ) -> None: ...
    @staticmethod
    def preset(
        preset: Literal["distilbert-base", "bert-base", "roberta-base", "xlm-roberta-base"],
        device: str = "cpu",
        **options: Any,
    ) -> "Explainer":
        """A random-weight model of a standard shape with a made-up vocabulary (w5, w6, ...: one
        token per word), for benchmarks. Takes the constructor's options."""
    def explain(
        self,
        pairs: Sequence[Pair],
        on_error: Literal["return", "raise"] = "return",
        **options: Any,
    ) -> List[Dict[str, Any]]:
        """One dict per pair, in order, equal to `spangrad explain --format json`; a pair that
        cannot be explained gives {"index", "id", "error"} (on_error="raise": ValueError).
        options: those of scope "request" (top_k=3, method="integrated-gradients", steps=32...)
        over the constructor's. Runs with the GIL released."""
    def explain_arrays(
        self, questions: Sequence[str], contexts: Sequence[str], **options: Any
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
    @property
    def options(self) -> Dict[str, Any]:
        """The options in force, by name (None for an "auto" left unset)."""

def set_threads(n: int) -> None:
    """At most n compute threads; call before the first explanation."""
