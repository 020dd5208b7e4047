"""LLMBackend guards (cache, retries, timeouts, budgets, concurrency), JSON handling, the
real llama.cpp path with SmolLM2, and the HTTP client against a real loopback server."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from recsage.errors import ConfigError, RecsageError
from recsage.llm import models
from recsage.llm.backends.base import (
    Budget,
    BudgetExceeded,
    Completion,
    LLMError,
    LLMTimeout,
    ResponseCache,
    TransientLLMError,
    extract_json,
    matches_schema,
)
from recsage.llm.backends.llamacpp import LlamaCppBackend
from recsage.llm.backends.openai import OpenAICompatBackend
from recsage.llm.backends.registry import create_backend
from recsage.llm.server import start_server

USER = [{"role": "user", "content": "hi"}]
SCHEMA = {
    "type": "object",
    "properties": {"ranking": {"type": "array", "items": {"type": "integer", "minimum": 1}}},
    "required": ["ranking"],
}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": 1}', {"a": 1}),
        ('Sure! Here it is:\n```json\n{"a": [1, 2,]}\n```\nanything else?', {"a": [1, 2]}),
        ('The answer is {"ranking": [3, 1]} as asked.', {"ranking": [3, 1]}),
        ("[2, 1, 3]", [2, 1, 3]),
        ("no json at all", None),
        ("{broken", None),
    ],
)
def test_extract_json_is_tolerant(text: str, value: object) -> None:
    assert extract_json(text) == value


def test_matches_schema_subset() -> None:
    assert matches_schema({"ranking": [1, 2]}, SCHEMA)
    assert not matches_schema({"ranking": [0]}, SCHEMA)
    assert not matches_schema({"ranking": ["1"]}, SCHEMA)
    assert not matches_schema({}, SCHEMA)
    assert matches_schema(None, {"type": ["integer", "null"]})
    assert not matches_schema("x", {"type": "string", "enum": ["a", "b"]})
    assert not matches_schema([1, 2, 3], {"type": "array", "maxItems": 2})


def test_schema_answers_get_json_only_when_valid(fake) -> None:
    b = fake('{"ranking": [2, 1]}', '{"ranking": "nope"}')
    assert b.complete(USER, schema=SCHEMA).json == {"ranking": [2, 1]}
    bad = b.complete(USER, schema=SCHEMA)
    assert bad.json is None and bad.text == '{"ranking": "nope"}'


def test_cache_is_json_on_disk_and_keyed_by_model_and_params(fake, tmp_path: Path) -> None:
    b = fake("first", "second", cache_dir=tmp_path)
    a1 = b.complete(USER, max_tokens=5)
    a2 = b.complete(USER, max_tokens=5)
    assert (a1.text, a1.cached) == ("first", False)
    assert (a2.text, a2.cached) == ("first", True)
    assert b.calls == 1 and b.cache_hits == 1
    assert b.complete(USER, max_tokens=6).text == "second"  # other params: other key
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 2
    record = json.loads(files[0].read_text())  # plain JSON, no pickle
    assert record["model"] == "fake:1" and "completion" in record
    from recsage.llm.backends.base import Request

    req = Request((("user", "hi"),), None, 5, 0.0, 0, 0, ())
    assert ResponseCache.key("m1", req) != ResponseCache.key("m2", req)
    assert b.complete(USER, max_tokens=5, use_cache=False).cached is False


def test_retries_transient_errors_with_backoff_then_gives_up(fake) -> None:
    b = fake(TransientLLMError, TransientLLMError, "ok", retries=2)
    assert b.complete(USER).text == "ok"
    assert len(b.requests) == 3
    b2 = fake(TransientLLMError, retries=1)
    with pytest.raises(TransientLLMError):
        b2.complete(USER)
    assert len(b2.requests) == 2
    b3 = fake(LLMError("bad request"), "ok", retries=3)  # not transient: no retry
    with pytest.raises(LLMError, match="bad request"):
        b3.complete(USER)
    assert len(b3.requests) == 1


def test_timeout_and_latency_budget(fake) -> None:
    slow = fake("late", delay=1.0)
    with pytest.raises(LLMTimeout):
        slow.complete(USER, timeout=0.1)
    with pytest.raises(BudgetExceeded, match="latency"):
        slow.complete(USER, budget=Budget(max_latency_s=0.1))


def test_token_budgets(fake) -> None:
    b = fake(Completion("x", tokens_in=500, tokens_out=1))
    with pytest.raises(BudgetExceeded, match="output budget"):
        b.complete(USER, max_tokens=100, budget=Budget(max_output_tokens=50))
    with pytest.raises(BudgetExceeded, match="about"):
        b.complete([{"role": "user", "content": "x" * 3000}], budget=Budget(max_prompt_tokens=100))
    assert not b.requests  # refused before any call
    with pytest.raises(BudgetExceeded, match="500 tokens"):
        b.complete(USER, budget=Budget(max_prompt_tokens=200))


def test_concurrency_limit(fake) -> None:
    b = fake("ok", delay=0.1, max_concurrency=2)
    threads = [threading.Thread(target=lambda: b.complete(USER, use_cache=False)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(b.requests) == 6 and b.max_in_flight <= 2


def test_bad_requests_are_config_errors(fake) -> None:
    b = fake("ok")
    with pytest.raises(ConfigError):
        b.complete([])
    with pytest.raises(ConfigError, match="role"):
        b.complete([{"role": "wizard", "content": "x"}])
    with pytest.raises(ConfigError):
        b.complete(USER, max_tokens=0)


def test_create_backend_dispatch(tmp_path: Path) -> None:
    assert create_backend(None) is None
    assert create_backend("none") is None
    assert isinstance(create_backend("smollm2"), LlamaCppBackend)
    assert isinstance(create_backend("http://127.0.0.1:9/v1"), OpenAICompatBackend)
    assert isinstance(create_backend(tmp_path / "m.gguf"), LlamaCppBackend)
    with pytest.raises(ConfigError, match="not a local model"):
        create_backend("gpt-nonsense")


def test_model_files_are_verified(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"not a model")
    with pytest.raises(RecsageError, match="does not match"):
        models.verify(f, "0" * 64)
    assert models.model_spec("qwen0.5b").name == "qwen2.5-coder-0.5b"
    with pytest.raises(ConfigError):
        models.model_spec("gpt-5")
    spec = models.MODELS["qwen2.5-coder-1.5b"]
    assert len(spec.chunks) == 22 and spec.chunks[9].path.endswith("part10.bin")


# ---- the real model -------------------------------------------------------------------------


def test_llamacpp_smollm2_json_schema_and_logprobs(smollm2) -> None:
    c = smollm2.complete(
        [{"role": "user", "content": "Rank items 1, 2 and 3. Reply as JSON."}],
        schema=SCHEMA, max_tokens=48,
    )  # fmt: skip
    assert not c.cached and c.tokens_in > 0 and 0 < c.tokens_out <= 48
    assert c.json is not None and matches_schema(c.json, SCHEMA)
    again = smollm2.complete(
        [{"role": "user", "content": "Rank items 1, 2 and 3. Reply as JSON."}],
        schema=SCHEMA, max_tokens=48,
    )  # fmt: skip
    assert again.cached and again.text == c.text
    yn = smollm2.complete(
        [{"role": "user", "content": "Is the sky blue? Answer Yes or No."}],
        max_tokens=1, top_logprobs=5,
    )  # fmt: skip
    assert len(yn.top_logprobs) == 1 and len(yn.top_logprobs[0]) >= 2


def test_http_backend_against_a_real_loopback_server(smollm2) -> None:
    secret = "sk-test-5ecret-never-shown"
    with start_server(smollm2, api_key=secret, model_name="smollm2") as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        client = OpenAICompatBackend(srv.url + "/v1", api_key=secret, timeout=120, retries=0)
        assert secret not in repr(client) and secret not in str(vars(client))
        c = client.complete(
            [{"role": "user", "content": "Rank the items 4, 5 and 6. Reply as JSON."}],
            schema=SCHEMA, max_tokens=48,
        )  # fmt: skip
        assert c.json is not None and matches_schema(c.json, SCHEMA)
        assert c.tokens_in > 0 and c.tokens_out > 0 and not c.cached
        assert smollm2.calls >= 1  # the server ran the model, not a canned answer
        yn = client.complete(
            [{"role": "user", "content": "Is grass green? Answer Yes or No."}],
            max_tokens=1, top_logprobs=5,
        )  # fmt: skip
        assert yn.top_logprobs and len(yn.top_logprobs[0]) >= 2
        wrong = OpenAICompatBackend(srv.url, api_key="sk-wrong-key-123", retries=0)
        with pytest.raises(LLMError) as err:
            wrong.complete(USER, max_tokens=2)
        assert "401" in str(err.value) and "sk-wrong-key-123" not in str(err.value)
        port = srv.httpd.server_address[1]
    gone = OpenAICompatBackend(f"http://127.0.0.1:{port}", api_key=secret, retries=1,
                               backoff_s=0.01, timeout=5)  # fmt: skip
    with pytest.raises(LLMError) as err:
        gone.complete(USER, max_tokens=2)
    assert secret not in str(err.value)


@pytest.mark.slow
def test_transformers_backend_on_a_tiny_local_model(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    import torch
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from recsage.llm.backends.transformers import TransformersBackend

    words = ["<unk>", "<s>", "</s>", "yes", "no", "hello", "world", "user", "assistant", ":"]
    tk = Tokenizer(tok_models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} {% endfor %}"
    cfg = LlamaConfig(
        vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    b = create_backend(tmp_path, cache_dir=tmp_path / "cache")
    assert isinstance(b, TransformersBackend)
    c = b.complete([{"role": "user", "content": "hello world"}], max_tokens=3, top_logprobs=2)
    assert c.tokens_out <= 3 and c.tokens_in > 0 and len(c.top_logprobs) == c.tokens_out
    assert b.complete(
        [{"role": "user", "content": "hello world"}], max_tokens=3, top_logprobs=2
    ).cached
