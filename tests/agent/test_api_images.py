"""``localedit api``: the OpenAI-compatible images endpoint, driven by the official ``openai`` client and
by a plain multipart request, on the tiny models (grounding knows the scene, as in ``test_agent``)."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from agent.api.images import create_api_app, thread_of
from agent.language.llm import Understander
from agent.runtime.session import Conversations
from agent.runtime.store import ImageStore
from tests.conftest import scene
from tests.helpers.scenes import CATS, SIZE, SceneWorker, agent_settings
from tests.helpers.served import served

pytestmark = pytest.mark.server
TOKEN = "api-token-0123456789"


@pytest.fixture(scope="module")
def api_conversations(settings, tmp_path_factory):
    """The conversations the API serves, for the module: one cat in the scene, the offline parser."""
    s = agent_settings(settings, tmp_path_factory.mktemp("api"))
    conv = Conversations(s, worker=SceneWorker(s, objects={"cat": [CATS[0]]}), understander=Understander(None))
    yield conv
    conv.close()


@pytest.fixture(scope="module")
def api(api_conversations):
    with served(create_api_app(api_conversations, token=TOKEN, host="127.0.0.1")) as url:
        yield url


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def decoded(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_the_openai_client_edits_the_cat_and_keeps_everything_else(api, api_conversations):
    photo = scene(SIZE, boxes=CATS)
    client = openai.OpenAI(base_url=api + "/v1", api_key=TOKEN)
    assert [m.id for m in client.models.list()] == ["localedit"]
    answer = client.images.edit(model="localedit", image=("cats.png", png(photo), "image/png"),
                                prompt="make the cat red", user="alice")
    out = decoded(answer.data[0].b64_json)
    assert out.format == "PNG" and out.size == photo.size and answer.size == "160x120"
    region = ImageStore.open_mask(api_conversations.session(thread_of("alice")).record()["region"])
    changed = (np.asarray(out.convert("RGB")) != np.asarray(photo)).any(axis=-1)
    assert changed.any() and not (changed & ~region).any()  # unchanged outside the region
    # the same user goes on with the image it got: no new upload, "it" is the cat just edited
    again = client.images.edit(model="localedit", image=("out.png", png(out), "image/png"), prompt="now make it blue",
                               user="alice", output_format="jpeg")
    assert decoded(again.data[0].b64_json).format == "JPEG"
    versions = api_conversations.session(thread_of("alice")).versions()
    assert len(versions) == 3 and versions[2]["record"]["plan"]["target"] == "cat"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=api + "/v1", api_key="wrong-key-0123").models.list()


def test_a_plain_multipart_request_with_a_mask_edits_only_the_masked_area(api, api_conversations):
    photo = scene(SIZE, boxes=CATS)
    alpha = np.full((SIZE[1], SIZE[0]), 255, np.uint8)
    x0, y0, x1, y1 = CATS[2]
    alpha[y0:y1, x0:x1] = 0  # fully transparent: edit here (the third cat, not the one grounding knows)
    mask = Image.fromarray(np.dstack([np.zeros((SIZE[1], SIZE[0], 3), np.uint8), alpha]), "RGBA")
    r = httpx.post(api + "/v1/images/edits", headers={"authorization": f"Bearer {TOKEN}"}, timeout=120,
                   files={"image": ("cats.png", png(photo), "image/png"), "mask": ("mask.png", png(mask), "image/png")},
                   data={"prompt": "make it red", "user": "bob", "n": "2"})
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 2
    out = np.asarray(decoded(r.json()["data"][0]["b64_json"]).convert("RGB"))
    changed = (out != np.asarray(photo)).any(axis=-1)
    ys, xs = np.nonzero(changed)
    assert changed.any() and xs.min() >= x0 - 12 and xs.max() < x1 + 12 and ys.min() >= y0 - 12 and ys.max() < y1 + 12


@pytest.mark.parametrize("files, data, param", [
    ({"image": ("a.png", b"", "image/png")}, {"prompt": "make it red"}, "image"),
    ("photo", {}, "prompt"),
    ("photo", {"prompt": "make it red", "output_format": "gif"}, "output_format"),
    ("photo", {"prompt": "make it red", "n": "12"}, "n"),
    ("photo", {"prompt": "make it red", "size": "huge"}, "size"),
    ("opaque-mask", {"prompt": "make it red"}, "mask"),
])
def test_bad_requests_get_openai_errors(api, files, data, param):
    photo = png(scene(SIZE, boxes=CATS))
    if files == "photo":
        files = {"image": ("cats.png", photo, "image/png")}
    elif files == "opaque-mask":
        files = {"image": ("cats.png", photo, "image/png"),
                 "mask": ("m.png", png(Image.new("RGB", SIZE)), "image/png")}
    r = httpx.post(api + "/v1/images/edits", headers={"authorization": f"Bearer {TOKEN}"}, files=files, data=data,
                   timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert r.json()["error"]["message"].endswith(".") and r.json()["error"]["type"] == "invalid_request_error"


def test_the_guard_answers_in_openai_format(api):
    auth = {"authorization": f"Bearer {TOKEN}"}
    r = httpx.post(api + "/v1/images/edits", content=b"prompt=x", timeout=30,
                   headers={**auth, "content-type": "text/plain"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]["message"]
    r = httpx.get(api + "/v1/models", headers={**auth, "origin": "http://evil.example"}, timeout=30)
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"


def test_a_question_is_an_error_the_same_users_next_prompt_answers(api, api_conversations):
    photo = png(scene(SIZE, boxes=CATS))
    api_conversations.worker.objects = {"cat": list(CATS)}  # three cats: "which one?"
    try:
        client = openai.OpenAI(base_url=api + "/v1", api_key=TOKEN)
        with pytest.raises(openai.BadRequestError) as asked:
            client.images.edit(model="localedit", image=("c.png", photo, "image/png"), prompt="make the cat red",
                               user="carol")
        assert asked.value.code == "clarification_needed" and "cat" in asked.value.message
        answer = client.images.edit(model="localedit", image=("c.png", photo, "image/png"), prompt="the leftmost",
                                    user="carol")
        assert decoded(answer.data[0].b64_json).size == SIZE
        record = api_conversations.session(thread_of("carol")).record()
        assert record["boxes"] == [list(map(float, CATS[0]))]
        before = len(list(api_conversations.checkpointer.list(None)))
        assert before > 0  # the users' threads are kept
        client.images.edit(model="localedit", image=("c.png", photo, "image/png"), prompt="make the leftmost cat red")
        assert len(list(api_conversations.checkpointer.list(None))) == before  # no user: its thread is not kept
    finally:
        api_conversations.worker.objects = {"cat": [CATS[0]]}
