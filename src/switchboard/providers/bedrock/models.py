"""Model families behind Bedrock whose model-specific fields (``additionalModelRequestFields``) the
adapter knows. Told apart by the model id, which for foundation models and inference profiles
names the family (``anthropic.claude-...``, ``us.anthropic.claude-...``, ``us.amazon.nova-2-...``);
an application inference profile ARN names none and gets only what every family has."""

from __future__ import annotations


def is_claude(model: str) -> bool:
    return "anthropic.claude" in model.lower()


def is_nova(model: str) -> bool:
    return "amazon.nova" in model.lower()


def is_cohere(model: str) -> bool:
    return "cohere.command" in model.lower()


# Families whose model parameters (AWS "Inference request parameters") have no top-k sampling
# control at all: Meta Llama, AI21 Jamba, DeepSeek, Amazon Titan Text.
_NO_TOP_K = ("meta.llama", "ai21.", "deepseek.", "amazon.titan")


def reads_no_top_k(model: str) -> bool:
    return any(family in model.lower() for family in _NO_TOP_K)


def is_nova_reasoner(model: str) -> bool:
    # Nova 2 models take reasoningConfig; the first Nova generation has no reasoning control.
    return "amazon.nova-2" in model.lower()
