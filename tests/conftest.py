from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway, start_mock


@pytest.fixture(scope="session")
def mock_upstream() -> Iterator[Mock]:
    mock = start_mock()
    yield mock
    mock.process.stop()


@pytest.fixture(scope="session")
def gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(openai_config(mock_upstream), tmp_path_factory.mktemp("gateway"))
    yield gw
    gw.process.stop()


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


@pytest.fixture
def aclient(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
