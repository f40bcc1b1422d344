"""Gradient explanations for extractive question answering."""

import os
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Union

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

class PairError(ValueError):
    """A pair that cannot be read or explained, raised by explain(on_error="raise")."""

    index: int
    """Its place in the list."""
    id: Any
    """Its id, as given (None when it had none or it could not be read)."""
    field: Optional[str]
    """The pair's field at fault ("context", "answer_start"), or None."""

Progress = Union[bool, None, Callable[[int, int], Any]]
"""True for a tqdm bar (pip install tqdm), or a callable given (done, total) as pairs are
explained; None or False for neither."""

class Explanation:
    """One pair's explanation. Its attributes are the fields of `spangrad explain --format
    json`; in a notebook it shows as the HTML report."""

    @property
    def id(self) -> Any:
        """The pair's id, as given; None when it had none."""
    @property
    def answer(self) -> Dict[str, Any]:
        """"text", "char_start", "char_end", "token_start", "token_end", "start_logit",
        "end_logit", "score", and "probability" where the pipeline's rule applies."""
    @property
    def model_answer(self) -> Optional[Dict[str, Any]]:
        """The model's own answer when the explained one is another (an answer given)."""
    @property
    def target(self) -> Dict[str, Any]:
        """The logits differentiated: "kind", "start_token", "end_token"."""
    @property
    def span_mode(self) -> str: ...
    @property
    def saliency(self) -> str: ...
    @property
    def method(self) -> Method: ...
    @property
    def completeness_error(self) -> Optional[float]:
        """Integrated gradients: sum of attributions minus (y(x) - y(baseline))."""
    @property
    def precision(self) -> str:
        """The dtype that computed it."""
    @property
    def seed_compat(self) -> bool: ...
    @property
    def truncated(self) -> bool: ...
    @property
    def window(self) -> Optional[Dict[str, Any]]:
        """The window of a split context explained."""
    @property
    def rank(self) -> Optional[int]: ...
    @property
    def tokens(self) -> List[Dict[str, Any]]:
        """One dict per token: "text", "token_type", "segment", "char_start", "char_end",
        "start_logit", "end_logit", "score", "raw", "grad_x_input"."""
    @property
    def words(self) -> List[Dict[str, Any]]:
        """One dict per word: "text", "segment", "char_start", "char_end", "score"."""
    @property
    def warnings(self) -> List[str]: ...
    @property
    def alternatives(self) -> List["Explanation"]:
        """With top_k: the next best spans."""
    @property
    def windows(self) -> List["Explanation"]:
        """With explain_windows="all": every window of a split context."""
    @property
    def scores(self) -> npt.NDArray[np.float32]:
        """The tokens' scores."""
    @property
    def question(self) -> str: ...
    @property
    def context(self) -> str: ...
    def to_dict(self) -> Dict[str, Any]:
        """As `spangrad explain --format json` writes it (JSON lines add "line")."""
    def to_json(self) -> str:
        """The CLI's JSON text."""
    def tokens_frame(self) -> Any:
        """The tokens as a pandas DataFrame (pandas must be installed)."""
    def words_frame(self) -> Any:
        """The words as a pandas DataFrame (pandas must be installed)."""
    def _repr_html_(self) -> str:
        """The HTML report, framed for a notebook."""

class Failure:
    """A pair with no explanation."""

    @property
    def index(self) -> int:
        """Its place in the list."""
    @property
    def id(self) -> Any: ...
    @property
    def error(self) -> str: ...
    @property
    def field(self) -> Optional[str]:
        """The pair's field at fault ("context", "answer_start"), or None."""
    def to_dict(self) -> Dict[str, Any]:
        """{"index", "id", "error", "field"}."""
    def to_json(self) -> str: ...

class Report:
    """The HTML report of explanations, as `spangrad explain --format html` writes it (no
    external scripts, styles or fonts); failures are left out, and one pair explained by
    several methods gets a toggle between them. Shows in Jupyter, VS Code and Colab."""

    html: str
    def __init__(
        self, explanations: Sequence[Union[Explanation, Failure]], title: Optional[str] = None
    ) -> None: ...
    def save(self, path: Union[str, os.PathLike]) -> None: ...
    def _repr_html_(self) -> str: ...

def save_html(
    explanations: Sequence[Union[Explanation, Failure]],
    path: Union[str, os.PathLike],
    title: Optional[str] = None,
) -> None:
    """Writes the HTML report of the explanations to path."""

class Evaluation:
    """Explainer.evaluate()'s result. results: per pair in order, a dict (the JSON line of
    `spangrad evaluate`: "answer", "window", "eligible", "probability", "methods" with each
    method's "scores", "comprehensiveness", "sufficiency", "aopc_comprehensiveness",
    "aopc_sufficiency", "loo_kendall_tau", and "random") or a Failure. summary: "pairs",
    "percents" and "rows", one per method then "random", each with the "mean", "std" and
    "count" of every metric and the mean curves. Shows in a notebook as the HTML page."""

    @property
    def results(self) -> List[Union[Dict[str, Any], Failure]]: ...
    @property
    def summary(self) -> Dict[str, Any]: ...
    def table(self) -> str:
        """The summary as the text table `spangrad evaluate` prints."""
    def summary_frame(self) -> Any:
        """The summary as a pandas DataFrame indexed by method (needs pandas)."""
    def to_html(self) -> str:
        """The page of `spangrad evaluate --format html`: tables and inline SVG curves."""
    def save_html(self, path: Union[str, os.PathLike]) -> None: ...
    def _repr_html_(self) -> str: ...

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
        progress: Progress = None,
        **options: Any,
    ) -> List[Union[Explanation, Failure]]:
        """An Explanation per pair, in order (its to_dict() equals `spangrad explain --format
        json`); a pair that cannot be read or explained gives a Failure (on_error="raise":
        PairError, or MemoryError / RuntimeError where the device failed). A pair is read as a
        JSON line is: other keys are left alone. options: those of scope "request" (top_k=3,
        method="integrated-gradients", steps=32...) over the constructor's. Runs with the GIL
        released; Ctrl-C stops it between steps of 64 pairs per device."""
    def explain_arrays(
        self,
        questions: Sequence[str],
        contexts: Sequence[str],
        progress: Progress = None,
        **options: Any,
    ) -> Dict[str, Union[npt.NDArray[np.float32], npt.NDArray[np.int64], List[Any]]]:
        """Arrays for dataframes: "scores" float32 [n, longest] (zero past "lengths"),
        "lengths", "answer_start", "answer_end", "answer_char_start", "answer_char_end" int64 [n]
        (-1 when none or failed), "answer" and "error" lists, "tokens" a list of lists."""
    def evaluate(
        self,
        pairs: Sequence[Pair],
        methods: Optional[Sequence[Method]] = None,
        metrics: Optional[Sequence[Literal["comprehensiveness", "sufficiency", "loo"]]] = None,
        random_orders: int = 5,
        progress: Progress = None,
        **options: Any,
    ) -> Evaluation:
        """How faithful each method's explanations are: comprehensiveness and sufficiency over
        the top 10..100% of tokens (ERASER's AOPC) and the leave-one-out Kendall tau (ferret's),
        each beside a seeded random ranking's, averaged over random_orders (0: none). methods
        defaults to all five, metrics to all three. The same as `spangrad evaluate`. Runs on
        the first device, with the GIL released."""
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
