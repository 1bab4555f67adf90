"""The REST API against a real ``facial-expressions serve`` (uvicorn on 127.0.0.1, a free port),
with the shipped model and real JAFFE photos: answers, every refusal and its status, the limits,
the token rule."""

import base64
import concurrent.futures
import json
import os
import re
import signal
import socket
import struct
import time
import zlib

import httpx
import psutil
import pytest

from classifiers import recognise
from web_helpers import Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def happy(jaffe_dir):
    return jaffe_dir / "happy" / "KA.HA1.29.tiff"


@pytest.fixture(scope="module")
def catalogue(datasets_dir):
    return datasets_dir.parent / "music" / "deezer_mood.csv"


@pytest.fixture(scope="module")
def server(tmp_path_factory, catalogue):
    with Server(str(tmp_path_factory.mktemp("web-api")), "--workers", "2", "--catalogue", catalogue) as running:
        yield running


def post_file(server, path, name="photo", query="", **kwargs):
    with open(path, "rb") as fh:
        return httpx.post(server.url(f"/api/analyze{query}"), files={"file": (name, fh.read())}, timeout=60,
                          **kwargs)


def raw_request(server, head, body=b"", wait=10.0):
    """Send ``head`` (and ``body``) on a plain socket -> (status, the answer's text, seconds to the answer)."""
    port = int(server.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        started = time.monotonic()
        sock.sendall(head + body)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 20:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except socket.timeout:
            pass
    status = int(answer.split(b" ", 2)[1]) if answer else None
    return status, answer.decode("latin-1"), time.monotonic() - started


def png_declaring(width, height):
    """A small PNG whose header declares width x height pixels (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


# ---- answers ----------------------------------------------------------------------------------

def test_a_photo_gives_the_faces_predict_json_gives(server, happy):
    answer = post_file(server, happy, query="?explain=3")
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["faces"] == [f.to_dict() for f in recognise(happy, explain=3)]
    assert result["faces"][0]["label"] == "happy" and result["image"] == {"width": 256, "height": 256}
    assert set(result["parts"][0]) == {"brows", "eyes", "nose", "mouth", "jaw"}
    assert all(c.startswith("#") and len(c) == 7 for c in result["part_colours"][0].values())
    assert "preview" not in result and "recommendation" not in result
    assert answer.headers["cache-control"] == "no-store" and "default-src 'self'" in answer.headers[
        "content-security-policy"]
    assert server.uploads() == [], "a photo is deleted once analysed"


def test_apparent_age_and_gender_on_request_as_recognise_gives_them(server, happy):
    answer = post_file(server, happy, query="?age_gender=true&explain=2")
    assert answer.status_code == 200, answer.text
    face = answer.json()["faces"][0]
    expected = recognise(happy, explain=2, age_gender=True, explain_age_gender=0)[0].to_dict()
    assert face == expected and face["gender"] == "female" and face["age_range"][0] <= face["age"] <= face["age_range"][1]
    assert "age_explanation" not in face and face["explanation"]  # the expression explained, not the age (tens of s)
    assert "age" not in post_file(server, happy).json()["faces"][0]


def test_mirror_false_reads_the_face_as_it_is_like_recognise(server, happy):
    one_view = post_file(server, happy, query="?mirror=false")
    assert one_view.status_code == 200, one_view.text
    faces = one_view.json()["faces"]
    assert faces == [f.to_dict() for f in recognise(happy, mirror=False)]
    both = post_file(server, happy).json()
    assert faces[0]["probabilities"] != both["faces"][0]["probabilities"]
    assert one_view.json()["mirror_averaged"] is False and both["mirror_averaged"] is True   # the answer says which


def test_base64_json_and_a_data_url_give_the_same_answer(server, happy):
    encoded = base64.b64encode(happy.read_bytes()).decode()
    plain = httpx.post(server.url("/api/analyze"), json={"image": encoded}, timeout=60)
    data_url = httpx.post(server.url("/api/analyze?preview=true"), json={"image": "data:image/tiff;base64," + encoded},
                          timeout=60)
    assert plain.status_code == data_url.status_code == 200
    assert plain.json()["faces"] == data_url.json()["faces"] == [f.to_dict() for f in recognise(happy)]
    assert data_url.json()["preview"].startswith("data:image/jpeg;base64,")


def test_a_photo_without_a_face_is_an_empty_list(server, tmp_path):
    from PIL import Image

    Image.new("RGB", (320, 240), (128, 128, 128)).save(tmp_path / "blank.png")
    answer = post_file(server, tmp_path / "blank.png")
    assert answer.status_code == 200 and answer.json()["faces"] == []


def test_music_for_a_photo_and_for_a_mood(server, happy):
    answer = post_file(server, happy, query="?recommend=lift&tracks=5").json()
    rec = answer["recommendation"]
    assert rec["mode"] == "lift" and len(rec["tracks"]) == 5 and "happy" in rec["reason"]
    assert rec["target"]["valence"] == pytest.approx(answer["faces"][0]["valence"], abs=1e-3)
    mood = httpx.post(server.url("/api/recommend"), json={"valence": -0.6, "arousal": -0.3, "label": "sad",
                                                           "tracks": 3}).json()
    assert len(mood["tracks"]) == 3 and mood["reason"].startswith("you look sad")
    bad = httpx.post(server.url("/api/recommend"), json={"valence": 3, "arousal": 0})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("valence:")


def test_model_health_and_docs_describe_the_server(server):
    model = httpx.get(server.url("/api/model")).json()
    assert model["labels"] == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert model["training_data"]["n_faces"] > 30000 and model["model"]["cv_balanced_accuracy"] > 0
    assert model["catalogue"] == {"file": "deezer_mood.csv", "tracks": pytest.approx(18644, abs=10)}
    assert model["limits"]["max_upload_bytes"] == 20 * 2**20 and model["limits"]["workers"] == 2
    assert model["drawing"]["parts"]["jaw"] == [0, 17] and "outer_lips" in model["drawing"]["colours"]
    health = httpx.get(server.url("/api/health")).json()
    assert health["status"] == "ok" and health["workers"] == 2 and health["busy"] == 0
    docs = httpx.get(server.url("/docs"))
    assert docs.status_code == 200 and "POST /api/analyze" in docs.text and "multipart/form-data" in docs.text
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text
    spec = httpx.get(server.url("/openapi.json")).json()
    assert {"/api/analyze", "/api/recommend", "/api/model", "/api/health"} <= set(spec["paths"])
    page = httpx.get(server.url("/"))
    assert page.status_code == 200 and "https://" not in page.text and "http://" not in page.text


# ---- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("content, status, message", [
    (b"\xff\xd8\xff\xe0" + os.urandom(3000), 400, "the upload: corrupt or truncated image data"),
    (b"just some text, not a picture\n" * 10, 415, "the upload: not an image file"),
    (b"", 400, "the upload: empty file"),
    (png_declaring(50000, 50000), 413, "the upload: image declares too many pixels"),
])
def test_bad_uploads_are_refused_with_their_status(server, tmp_path, content, status, message):
    (tmp_path / "upload").write_bytes(content)
    answer = post_file(server, tmp_path / "upload")
    assert answer.status_code == status and answer.json()["detail"].startswith(message), answer.text
    assert str(server.tmp) not in answer.text, "no server path in the message"
    assert answer.json()["status"] == status


@pytest.mark.parametrize("kwargs, status, message", [
    ({"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "send the image as multipart"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "the body is not valid JSON"),
    ({"json": {"image": "%%% not base64"}}, 400, '"image" is not valid base64'),
    ({"json": {"picture": "abc"}}, 400, 'the JSON body needs "image"'),
    ({"json": {"image": "aGk=", "explain": 3}}, 422, "unknown field(s) 'explain' in the JSON body"),
    ({"files": {"photo": ("a.jpg", b"abc")}}, 400, "the multipart body has no file field 'file'"),
])
def test_malformed_requests_say_what_is_wrong(server, kwargs, status, message):
    answer = httpx.post(server.url("/api/analyze"), **kwargs)
    assert answer.status_code == status and answer.json()["detail"].startswith(message), answer.text


@pytest.mark.parametrize("query, message", [
    ("?explain=50", "explain: Input should be less than or equal to 20"),
    ("?detector=magic", "detector: Input should be 'auto', 'hog', 'cnn' or 'whole'"),
    ("?explian=3", "explian: unknown option"),
    ("?tracks=0&recommend=match", "tracks: Input should be greater than or equal to 1"),
])
def test_bad_options_are_422(server, happy, query, message):
    answer = post_file(server, happy, query=query)
    assert answer.status_code == 422 and answer.json()["detail"] == message, answer.text


def test_a_request_for_another_host_is_refused(server):
    answer = httpx.get(server.url("/api/health"), headers={"host": "attacker.example:80"})
    assert answer.status_code == 400 and "localhost only" in answer.json()["detail"]


def test_an_announced_oversized_body_is_refused_before_it_is_sent(server):
    """413 for a Content-Length over the limit, answered at once: the test sends no body at all."""
    head = (b"POST /api/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 31457280\r\n\r\n")
    status, text, seconds = raw_request(server, head)
    assert status == 413 and "larger than this server's limit of 20 MB" in text and seconds < 5


def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit(server):
    def body():
        yield b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n"
        for _ in range(40):  # 40 MB offered, 20 MB allowed
            yield b"\0" * 2**20
    answer = httpx.post(server.url("/api/analyze"), content=body(), timeout=60,
                        headers={"content-type": "multipart/form-data; boundary=x"})
    assert answer.status_code == 413, answer.text


# ---- limits: time, busy, slow clients, token ----------------------------------------------------

@pytest.fixture(scope="module")
def big_photo(happy, tmp_path_factory):
    """The happy JAFFE face on a 3000 x 3000 canvas: a few hundred ms of work per request."""
    from PIL import Image

    path = tmp_path_factory.mktemp("big") / "big.png"
    Image.open(happy).convert("L").resize((3000, 3000)).save(path)
    return path


def test_a_full_pool_answers_503_at_once_and_keeps_serving(tmp_path, big_photo, happy):
    with Server(str(tmp_path), "--workers", "1", "--queue", "1") as server:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: post_file(server, big_photo), range(8)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses.count(200) >= 2 and statuses.count(503) >= 1 and set(statuses) <= {200, 503}, statuses
        busy = next(a for a in answers if a.status_code == 503)
        assert busy.headers["retry-after"] == "1" and "the server is busy" in busy.json()["detail"]
        assert post_file(server, happy).json()["faces"][0]["label"] == "happy"
        assert server.uploads() == []
        workers = psutil.Process(server.process.pid).children(recursive=True)
        assert len(workers) >= 1
    _, alive = psutil.wait_procs(workers, timeout=10)  # multiprocessing's resource tracker leaves on EOF, just after
    assert not [w for w in alive if w.status() != psutil.STATUS_ZOMBIE], "workers stopped"
    assert server.process.returncode == 130 and "interrupted" in server.output(), "Ctrl-C: 130, as every command"
    assert not [d for d in os.listdir(server.tmp) if "uploads" in d], "the upload folder goes with the server"


def test_over_the_time_budget_is_503_and_the_worker_is_replaced(tmp_path, big_photo, happy):
    with Server(str(tmp_path), "--workers", "1", "--time-budget", "0.2") as server:
        slow = post_file(server, big_photo)
        assert slow.status_code == 503 and "longer than the time budget (0.2 s)" in slow.json()["detail"]
        deadline = time.monotonic() + 120
        while True:  # the replacement loads its models; meanwhile answers are 503
            answer = post_file(server, happy)
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert answer.status_code == 200 and answer.json()["faces"][0]["label"] == "happy"


def test_a_slow_upload_is_408_while_others_are_served(tmp_path, happy):
    with Server(str(tmp_path), "--workers", "1", "--receive-timeout", "2") as server:
        port = int(server.base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=20) as slow:
            slow.sendall(b"POST /api/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                         b"Content-Type: multipart/form-data; boundary=x\r\n\r\n--x\r\n")
            started = time.monotonic()
            assert post_file(server, happy).status_code == 200  # served while the slow one trickles
            answer = b""
            while b"\r\n\r\n" not in answer:
                try:
                    slow.sendall(b"a")
                except OSError:
                    pass
                slow.settimeout(0.3)
                try:
                    answer += slow.recv(4096)
                except socket.timeout:
                    pass
                assert time.monotonic() - started < 15, "no answer to the slow upload"
            head, _, body = answer.partition(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))
            slow.settimeout(5)
            while len(body) < length:  # the body may come in a later packet than the headers
                more = slow.recv(4096)
                assert more, "the connection closed before the whole answer"
                body += more
        assert head.startswith(b"HTTP/1.1 408") and b"did not arrive within 2 s" in body


def test_a_token_is_required_when_set(tmp_path, happy):
    with Server(str(tmp_path), "--workers", "1", "--cors-origin", "https://app.example",
                env={"FER_WEB_TOKEN": "s3cret-token"}) as server:
        assert "#token=s3cret-token" in server.output()
        missing = httpx.get(server.url("/api/model"))
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer TOKEN" in missing.json()["detail"]
        wrong = post_file(server, happy, headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401
        right = post_file(server, happy, headers={"Authorization": "Bearer s3cret-token"})
        assert right.status_code == 200 and right.json()["faces"][0]["label"] == "happy"
        assert httpx.get(server.url("/api/health")).status_code == 200  # no data: open
        assert httpx.get(server.url("/")).status_code == 200            # the page asks for the token itself
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization"}
        allowed = httpx.options(server.url("/api/analyze"), headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(server.url("/api/analyze"), headers=dict(preflight, Origin="https://other.example"))
        assert "access-control-allow-origin" not in other.headers


def test_no_cors_unless_configured(server):
    answer = httpx.get(server.url("/api/health"), headers={"Origin": "https://app.example"})
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers


def test_listening_beyond_this_machine_needs_a_token(run_python):
    result = run_python(["-m", "facial_expressions", "serve", "--host", "0.0.0.0", "--port", "0"],
                        env={"FER_WEB_TOKEN": ""})
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        "error: listening on 0.0.0.0 lets other machines in: give an access token with --token TOKEN or "
        "FER_WEB_TOKEN")


def test_without_a_catalogue_music_is_refused_clearly(tmp_path, happy):
    with Server(str(tmp_path), "--workers", "1") as server:
        answer = post_file(server, happy, query="?recommend=match")
        assert answer.status_code == 422 and "no music catalogue: start it with --catalogue FILE" in answer.text
        mood = httpx.post(server.url("/api/recommend"), json={"valence": 0.1, "arousal": 0.1})
        assert mood.status_code == 404 and "--catalogue FILE" in mood.json()["detail"]
        assert httpx.get(server.url("/api/model")).json()["catalogue"] is None
        assert server.stop(signal.SIGTERM) == 0
    assert not [d for d in os.listdir(server.tmp) if "uploads" in d], "SIGTERM removes the upload folder too"


@pytest.mark.parametrize("args, message", [
    (["--model", "/no/model.skops"], "error: /no/model.skops: "),
    (["--catalogue", "/no/tracks.csv"], "error: /no/tracks.csv: no such catalogue file"),
])
def test_start_up_errors_are_one_line(run_python, args, message):
    result = run_python(["-m", "facial_expressions", "serve", "--port", "0", *args])
    assert result.returncode == 1 and result.stderr.strip().startswith(message), result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_shape_predictor_that_does_not_load_stops_the_server_in_one_line(run_python, tmp_path):
    # the fork server the workers come from fails to load it too: the worker loads it again and says why
    (tmp_path / "predictor.dat").write_text("not a dlib model\n")
    result = run_python(["-m", "facial_expressions", "serve", "--port", "0"],
                        env={"FER_SHAPE_PREDICTOR": str(tmp_path / "predictor.dat")})
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (f"error: an analysis process could not start: ModelFileError: {tmp_path}/predictor.dat: "
                                     "not a dlib shape predictor (Error deserializing object of type int)"), result.stderr


def test_workers_and_video_jobs_are_forked_from_a_server_that_has_loaded_the_pipeline(run_python):
    # in a process of its own, so its fork server goes with it
    code = """if True:
        import json, os, sys
        sys.path.insert(0, "tests")
        from web_helpers import what_a_child_has
        from facial_expressions.web import processes
        context = processes.context()
        parent, child = context.Pipe(duplex=False)
        process = context.Process(target=what_a_child_has, args=(child,))
        process.start()
        child.close()
        seen = parent.recv() if parent.poll(120) else {}
        process.join(30)
        server = seen.get("parent")
        seen["fork_server_threads"] = len(os.listdir(f"/proc/{server}/task")) if server else None
        print(json.dumps(dict(seen, method=context.get_start_method(), me=os.getpid())))
    """
    result = run_python(["-c", code])
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["method"] == "forkserver" and seen["parent"] not in (seen["me"], None), seen   # not a fork of the server
    assert seen["preloaded"] and seen["predictor_loaded"], seen   # the pipeline was in memory before the child ran
    assert seen["fork_server_threads"] == 1, seen                 # nothing forked with another thread's lock held


def test_a_port_in_use_is_one_line(run_python):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_python(["-m", "facial_expressions", "serve", "--port", port])
    assert result.returncode == 1 and result.stderr.strip() == f"error: 127.0.0.1:{port}: Address already in use"


def test_predict_does_not_import_the_web_stack(happy, run_python):
    code = ("import runpy, sys, atexit\n"
            "atexit.register(lambda: print('WEB', sorted({m.split('.')[0] for m in sys.modules} & "
            "{'fastapi', 'starlette', 'uvicorn', 'pydantic', 'anyio'}), file=sys.stderr))\n"
            "sys.argv = ['facial-expressions', 'predict'] + sys.argv[1:]\n"
            "runpy.run_module('facial_expressions', run_name='__main__')\n")
    result = run_python(["-c", code, happy])
    assert result.returncode == 0 and "happy" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "WEB []", result.stderr
