"""An independent reference for the golden tests: OpenAI's cookbook counting ("How to count
tokens with tiktoken": num_tokens_from_messages and num_tokens_for_tools), written here with
tiktoken's own encodings, plus the documented extensions (content parts, tool calls, images by
the vision guide's tile arithmetic, from sizes the test knows rather than parses).

tiktoken's own encoding definitions are used (its pinned hashes, split patterns and special
tokens, via ``tiktoken.get_encoding``), fed from a cache directory seeded with the rank files the
package ships, so nothing is downloaded and a mistake in the gateway's copy of a pattern would
show up as a mismatch.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import tiktoken

URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


def seed_cache(cache: Path) -> None:
    """Put the shipped rank files where tiktoken's file cache looks for its downloads."""
    cache.mkdir(parents=True, exist_ok=True)
    for name, url in URLS.items():
        src = resources.files("switchboard.data").joinpath(f"{name}.tiktoken")
        with resources.as_file(src) as path:
            shutil.copyfile(path, cache / hashlib.sha1(url.encode()).hexdigest())


def reference_encoding(name: str) -> tiktoken.Encoding:
    """tiktoken's own encoding; the caller points TIKTOKEN_CACHE_DIR at a seeded cache first."""
    return tiktoken.get_encoding(name)


class Reference:
    def __init__(self, enc: tiktoken.Encoding, model: str) -> None:
        self.enc, self.model = enc, model

    def n(self, text: str) -> int:
        return len(self.enc.encode(text, disallowed_special=()))

    def image(self, width: int, height: int, detail: str) -> int:
        base, tile = (2833, 5667) if "gpt-4o-mini" in self.model else (85, 170)
        if detail == "low":
            return base
        w, h = width, height
        if max(w, h) > 2048:
            w, h = w * 2048 / max(width, height), h * 2048 / max(width, height)
        if min(w, h) > 768:
            f = 768 / min(w, h)
            w, h = w * f, h * f
        return base + tile * math.ceil(w / 512) * math.ceil(h / 512)

    def messages(self, messages: list[dict[str, Any]], sizes: dict[str, tuple[int, int]]) -> int:
        # num_tokens_from_messages: tokens_per_message = 3, tokens_per_name = 1, + 3 priming.
        total = 0
        for message in messages:
            total += 3
            for key, value in message.items():
                if key in ("role", "name") or (key == "content" and isinstance(value, str)):
                    total += self.n(value)
                if key == "name":
                    total += 1
                if key == "content" and isinstance(value, list):
                    for part in value:
                        if part["type"] == "text":
                            total += self.n(part["text"])
                        else:
                            url = part["image_url"]["url"]
                            size = sizes.get(url, (1024, 1024))
                            total += self.image(*size, part["image_url"].get("detail", "auto"))
                if key == "tool_calls":
                    for call in value:
                        total += 3 + self.n(call["function"]["name"]) + self.n(call["function"]["arguments"])
        return total + 3

    def tools(self, functions: list[dict[str, Any]]) -> int:
        # num_tokens_for_tools, with the cookbook's constants for each encoding.
        func_init = 7 if self.enc.name == "o200k_base" else 10
        prop_init, prop_key, enum_init, enum_item, func_end = 3, 3, -3, 3, 12
        count = 0
        for f in functions:
            count += func_init
            function = f["function"]
            desc = function.get("description", "")
            if desc.endswith("."):
                desc = desc[:-1]
            count += self.n(function["name"] + ":" + desc)
            properties = function.get("parameters", {}).get("properties", {})
            if len(properties) > 0:
                count += prop_init
                for key, prop in properties.items():
                    count += prop_key
                    if "enum" in prop:
                        count += enum_init
                        for item in prop["enum"]:
                            count += enum_item + self.n(item)
                    p_desc = prop.get("description", "")
                    if p_desc.endswith("."):
                        p_desc = p_desc[:-1]
                    count += self.n(f"{key}:{prop['type']}:{p_desc}")
                    rest = {k: v for k, v in prop.items() if k not in ("type", "description", "enum")}
                    if rest:
                        count += self.n(json.dumps(rest, separators=(",", ":"), ensure_ascii=False))
        return count + func_end

    def chat(self, request: dict[str, Any], sizes: dict[str, tuple[int, int]]) -> int:
        total = self.messages(request["messages"], sizes)
        if request.get("tools"):
            total += self.tools(request["tools"])
        return total
