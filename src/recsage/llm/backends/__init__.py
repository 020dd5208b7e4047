"""LLM backends: llama.cpp in-process, OpenAI-compatible HTTP, local transformers."""
