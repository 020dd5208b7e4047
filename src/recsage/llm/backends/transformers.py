"""Local transformers backend."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from recsage.errors import ConfigError, RecsageError
from recsage.llm.backends.base import Completion, LLMBackend, LLMTimeout, Request


class TransformersBackend(LLMBackend):
    """A local Hugging Face causal LM folder (offline, CPU by default); no schema-constrained
    decoding, so JSON is extracted from the text."""

    supports_schema = False
    supports_logprobs = True

    def __init__(self, path: str | Path, *, device: str = "cpu", **options: Any) -> None:
        super().__init__(**options)
        self.path = Path(path).expanduser()
        if not (self.path / "config.json").is_file():
            raise ConfigError(f"{self.path} is not a Hugging Face model folder (no config.json)")
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None
        self._id: str | None = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        if self._id is None:
            h = hashlib.sha256()
            for p in sorted(q for q in self.path.rglob("*") if q.is_file()):
                st = p.stat()
                h.update(f"{p.relative_to(self.path).as_posix()}:{st.st_size}\n".encode())
                if p.suffix in (".json", ".txt", ".model", ".jinja"):
                    h.update(p.read_bytes())
            self._id = f"hf:{self.path.name}:{h.hexdigest()[:16]}"
        return self._id

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    from transformers import AutoModelForCausalLM, AutoTokenizer
                except ImportError:
                    raise RecsageError(
                        "the transformers backend needs torch and transformers: "
                        "pip install 'recsage[semantic]'"
                    ) from None
                self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
                model: Any = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True)
                self._model = model.to(self.device).eval()
        return self._model, self._tokenizer

    def _call(self, request: Request, timeout: float) -> Completion:
        import torch

        model, tok = self._load()
        messages = request.message_dicts()
        if getattr(tok, "chat_template", None):
            prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            prompt = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
        enc = tok(prompt, return_tensors="pt", add_special_tokens=False).to(self.device)
        n_in = int(enc["input_ids"].shape[1])
        sample = request.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "do_sample": sample,
            "output_scores": request.top_logprobs > 0,
            "return_dict_in_generate": True,
            "max_time": max(timeout, 0.01),
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        }
        if sample:
            kwargs["temperature"] = request.temperature
            torch.manual_seed(request.seed)
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**enc, **kwargs)
        if time.perf_counter() - start > timeout:
            raise LLMTimeout(f"generation took longer than {timeout:.1f}s")
        new = out.sequences[0, n_in:]
        text = tok.decode(new, skip_special_tokens=True)
        for s in request.stop:
            if s and s in text:
                text = text[: text.index(s)]
        tops: list[dict[str, float]] = []
        if request.top_logprobs > 0:
            for step in out.scores:
                lp = torch.log_softmax(step[0].float(), dim=-1)
                vals, ids = torch.topk(lp, min(request.top_logprobs, lp.shape[-1]))
                tops.append(
                    {tok.decode([int(i)]): float(v) for v, i in zip(vals, ids, strict=True)}
                )
        return Completion(text=text, tokens_in=n_in, tokens_out=len(new), top_logprobs=tops)
