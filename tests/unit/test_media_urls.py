"""media_urls.py: one reading of image and file URLs (the end-to-end view, per
provider: tests/e2e/test_image_urls.py)."""

from __future__ import annotations

import base64

import pytest

from switchboard import media_urls
from switchboard.errors import InvalidRequest

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(40))).decode()
PARAM = "messages[0].content[1].image_url.url"


CASES = ["DATA:image/png;base64,", "data:IMAGE/PNG;BASE64,", "Data:Image/Png;Base64,"]


@pytest.mark.parametrize("url", CASES)
def test_scheme_media_type_and_base64_token_are_read_in_any_case(url: str) -> None:
    parsed = media_urls.data_url(url + PNG, PARAM)
    assert (parsed.media_type, parsed.data) == ("image/png", PNG)
    assert media_urls.canonical(url + PNG, PARAM) == f"data:image/png;base64,{PNG}"


def test_parameters_are_kept_and_jpg_is_jpeg() -> None:
    url = f"data:Image/JPG;name=cat.JPG;base64,{PNG}"
    assert media_urls.canonical(url, PARAM) == f"data:image/jpeg;name=cat.JPG;base64,{PNG}"


def test_a_url_in_canonical_form_is_returned_as_it_is() -> None:
    url = f"data:image/png;base64,{PNG}"
    assert media_urls.canonical(url, PARAM) is url
    web = "https://images.example/cat.png"
    assert media_urls.canonical(web, PARAM) is web
    assert not media_urls.needs_reading(web)
    assert media_urls.needs_reading(url) and media_urls.needs_reading("HTTPS://images.example/cat.png")


def test_only_the_scheme_is_lowered() -> None:
    assert media_urls.lowered("HTTPS://Images.Example/Cat.PNG") == "https://Images.Example/Cat.PNG"
    assert media_urls.scheme("no scheme here") == ""


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("", "holds no data"),
        ("iVBORw0KGgo", "not valid base64"),  # unpadded
        ("iVBO Rw0K", "not valid base64"),
        ("iVBO\nRw0K", "not valid base64"),
        ("ab-_", "not valid base64"),  # the URL-safe alphabet
        ("a=bc", "not valid base64"),  # padding inside
        ("ab===", "not valid base64"),
        ("aé==", "not valid base64"),
    ],
)
def test_data_that_is_not_padded_standard_base64_is_a_400_naming_the_part(data: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        media_urls.data_url(f"data:image/png;base64,{data}", PARAM)
    assert exc.value.status == 400 and exc.value.param == PARAM and says in str(exc.value)


NOT_BASE64_OF_A_TYPE = ["data:image/png,abcd", "data:;base64,abcd", "data:png;base64,ab==", "data:abc"]


@pytest.mark.parametrize("url", NOT_BASE64_OF_A_TYPE)
def test_a_data_url_that_is_not_base64_of_a_media_type_is_a_400(url: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        media_urls.data_url(url, PARAM)
    assert exc.value.param == PARAM and "base64-encoded" in str(exc.value)


@pytest.mark.parametrize("data", ["abcd", "ab==", "abc=", PNG])
def test_padded_standard_base64_passes(data: str) -> None:
    assert media_urls.data_url(f"data:image/png;base64,{data}", PARAM).data == data


def test_the_token_counter_finds_the_data_in_any_case_and_refuses_nothing() -> None:
    for head in CASES:
        assert media_urls.data_start(head + PNG) == len(head)
    for url in ["https://images.example/cat.png", "data:image/png,abcd", "data:;base64,abcd", "DATA:abc"]:
        assert media_urls.data_start(url) == -1


@pytest.mark.parametrize(("data", "says"), [("", "holds no data"), ("ab-_", "not valid base64"),
                                            (None, "a string of base64")])
def test_bare_base64_is_held_to_the_same_rule(data: object, says: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        media_urls.base64_data(data, "messages[0].content[1].input_audio.data", "the audio data")
    assert exc.value.param == "messages[0].content[1].input_audio.data"
    assert str(exc.value).startswith("the audio data") and says in str(exc.value)
    assert media_urls.base64_data(PNG, "p") == PNG
