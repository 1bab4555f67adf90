"""The public API (classifiers.recognise, recognise_many, load_model), the facial-expressions
command line, and the layout rules that keep applications above the library."""

import ast
import dataclasses
import doctest
import json
import os
import pathlib
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import classifiers
from classifiers import FacePrediction, load_model, recognise, recognise_many
from classifiers import predict as predict_cli
from classifiers import api as api_module
from common.errors import ImageNotFoundError, ImageTooSmallError, NotAnImageError
from facial_expressions import cli

PROJECT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def happy(jaffe_dir):
    return jaffe_dir / "happy" / "KA.HA1.29.tiff"


def test_one_face_as_path_array_and_pil_image_gives_the_same_prediction(happy):
    by_path = recognise(happy)
    gray = np.asarray(Image.open(happy).convert("L"))
    rgb = np.asarray(Image.open(happy).convert("RGB"))
    assert len(by_path) == 1 and by_path[0].label == "happy" and by_path[0].confidence > 0.9
    for other in (str(happy), gray, rgb, Image.open(happy)):
        assert recognise(other) == by_path


def test_face_prediction_is_frozen_typed_and_its_dict_is_the_json_shape(happy):
    face = recognise(happy, explain=2)[0]
    assert isinstance(face, FacePrediction)
    with pytest.raises(dataclasses.FrozenInstanceError):
        face.label = "sad"
    assert len(face.landmarks) == 68 and len(face.box) == 4
    assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert list(face.probabilities) == load_model().labels
    assert 1 <= len(face.explanation.toward) <= 2 and len(face.explanation.against) <= 2
    assert set(face.explanation.parts) == {"brows", "eyes", "nose", "mouth", "jaw"}
    record = face.to_dict()
    assert list(record) == ["box", "label", "probabilities", "landmarks", "valence", "arousal", "explanation",
                            "explanation_kind"]
    assert record["valence"] > 0.3 and record["arousal"] > 0  # a happy face: pleasant, somewhat aroused
    assert not [k for k in record if k.startswith("_")] and "_parts" not in json.dumps(record)
    assert record["explanation_kind"] == "logit"
    assert record["explanation"][0]["contribution"] == face.explanation.toward[0].contribution
    plain = recognise(happy)[0].to_dict()
    assert list(plain) == ["box", "label", "probabilities", "landmarks", "valence", "arousal"]
    assert plain["box"] == record["box"]


def test_predict_json_is_exactly_recognise_to_dict(happy):
    result = CliRunner().invoke(predict_cli.main, [str(happy), "--json", "--explain", "3"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.output)
    assert line == {"image": str(happy), "mirror_averaged": True,
                    "faces": [f.to_dict() for f in recognise(happy, explain=3)]}


def test_a_photo_and_its_mirror_agree_far_better_with_mirror_averaging(jaffe_samples):
    """recognise's default reads a face as the mean of its features and its mirror image's: on real
    JAFFE photos, a photo and its mirrored photo get far closer probabilities than without, and
    predict --no-mirror gives exactly recognise(mirror=False)."""
    from landmarks.io import read_image

    gaps = {True: [], False: []}
    for sample in jaffe_samples[::15]:
        image = read_image(sample.path)
        for mirror in gaps:
            a, b = recognise(image, mirror=mirror)[0], recognise(np.ascontiguousarray(image[:, ::-1]), mirror=mirror)[0]
            gaps[mirror].append(max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities))
    assert np.mean(gaps[True]) < 0.5 * np.mean(gaps[False]), gaps
    path = jaffe_samples[0].path
    assert recognise(path, mirror=False) != recognise(path)
    result = CliRunner().invoke(predict_cli.main, [path, "--json", "--no-mirror"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.output)
    assert line["faces"] == [f.to_dict() for f in recognise(path, mirror=False)] and line["mirror_averaged"] is False


def test_symmetric_landmarks_of_a_mirrored_photo_are_exactly_the_mirror_image(jaffe_samples):
    """dlib alone places points on a mirrored photo a pixel or two differently; the symmetric mean
    gives the mirrored photo (at the mirrored box) exactly the mirror image of the photo's points."""
    from landmarks.detect import detect_faces
    from landmarks.io import read_image
    from landmarks.shape import MIRROR, predict_landmarks

    def reflected(points, width):
        out = points.copy()
        out[:, 0] = (width - 1) - out[:, 0]
        return out[MIRROR]

    plain_differs = False
    for sample in jaffe_samples[::40]:
        image = read_image(sample.path)
        flipped, width = np.ascontiguousarray(image[:, ::-1]), image.shape[1]
        x, y, w, h = detect_faces(image, "hog")[0]
        box, mirrored_box = (x, y, w, h), (width - x - w, y, w, h)
        assert np.array_equal(reflected(predict_landmarks(image, box, symmetric=True), width),
                              predict_landmarks(flipped, mirrored_box, symmetric=True))
        plain_differs |= not np.array_equal(reflected(predict_landmarks(image, box), width),
                                            predict_landmarks(flipped, mirrored_box))
    assert plain_differs, "dlib's own points were mirror-symmetric on every photo: the test shows nothing"


def test_mirror_reading_makes_a_crop_and_its_mirror_agree(fer_dir):
    """On real FER-2013 crops (the whole image is the face, so the boxes mirror exactly), recognise's
    default reading (symmetric landmarks, mirror-averaged features) gives a crop and its mirror
    image nearly the same probabilities: far closer than mirror averaging on dlib's own points."""
    from classifiers import load_model
    from features.describe import describe_image, mirror_averaged
    from landmarks.io import read_image

    model = load_model(None)
    paths = sorted(fer_dir.glob("test/*/*.jpg"))[::700]
    gaps = {"recognise": [], "dlib's points": []}
    for path in paths:
        image = read_image(path)
        views = (image, np.ascontiguousarray(image[:, ::-1]))
        a, b = (recognise(view, detector="whole")[0].probabilities for view in views)
        gaps["recognise"].append(max(abs(a[c] - b[c]) for c in a))
        rows = [describe_image(view, model.config, "whole") for view in views]
        p, q = (model.predict_proba(mirror_averaged(faces, X, model.config))[0] for faces, X, _ in rows)
        gaps["dlib's points"].append(float(np.abs(p - q).max()))
    assert np.mean(gaps["recognise"]) < 0.2 * np.mean(gaps["dlib's points"]), gaps
    assert max(gaps["recognise"]) < 0.1, gaps


@pytest.mark.parametrize("kwargs, message", [
    ({"upsample": 9}, "upsample must be a whole number from 0 to 3, not 9"),
    ({"upsample": -1}, "upsample must be a whole number from 0 to 3, not -1"),
    ({"upsample": 1.5}, "upsample must be a whole number from 0 to 3, not 1.5"),
    ({"max_faces": -1}, "max_faces must be a whole number of at least 1, not -1"),
    ({"max_faces": 0}, "max_faces must be a whole number of at least 1, not 0"),
    ({"explain": -1}, "explain must be a whole number of at least 0, not -1"),
    ({"upsample": 9, "boxes": [(0, 0, 64, 64)]}, "upsample must be a whole number from 0 to 3, not 9"),
])
def test_out_of_range_arguments_are_a_value_error(kwargs, message):
    """Not dlib's TypeError, not 23 GB of upsampled image, not a silently empty answer."""
    with pytest.raises(ValueError) as caught:
        recognise(np.full((64, 64), 128, dtype=np.uint8), **kwargs)
    assert str(caught.value) == message


def test_a_model_file_asking_for_9_upsampling_steps_is_refused():
    from common.errors import IncompatibleModelError
    from features.describe import FeatureConfig

    with pytest.raises(IncompatibleModelError, match="upsample must be a whole number from 0 to 3, not 9"):
        FeatureConfig.from_dict(dict(FeatureConfig().to_dict(), upsample=9))


def test_music_options_without_a_catalogue_are_a_usage_error(happy):
    result = CliRunner().invoke(predict_cli.main, [str(happy), "--mode", "lift", "--tracks", "3"])
    assert result.exit_code == 2 and "--mode and --tracks apply only with --recommend CATALOGUE" in result.output


def test_faces_come_largest_first(jaffe_dir):
    big = Image.open(jaffe_dir / "happy" / "KA.HA1.29.tiff").convert("L")
    small = Image.open(jaffe_dir / "surprise" / "KA.SU1.36.tiff").convert("L").resize((160, 160))
    canvas = Image.new("L", (640, 300), 128)
    canvas.paste(small, (20, 70))
    canvas.paste(big, (360, 20))
    faces = recognise(np.asarray(canvas))
    assert len(faces) == 2
    assert faces[0].box[2] > faces[1].box[2] and faces[0].box[0] > 300  # the big face, on the right


def test_bad_arrays_and_missing_files_raise_specific_errors():
    with pytest.raises(NotAnImageError, match="dtype float64"):
        recognise(np.zeros((64, 64)))
    with pytest.raises(NotAnImageError, match="shape"):
        recognise(np.zeros((64, 64, 2), dtype=np.uint8))
    with pytest.raises(ImageTooSmallError):
        recognise(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ImageNotFoundError):
        recognise("/no/such/photo.jpg")
    assert recognise(np.full((256, 256, 3), 200, dtype=np.uint8)) == []  # (auto takes up to 128 px as a face crop)


def test_recognise_many_streams_in_order_with_errors_in_place(jaffe_dir, tmp_path):
    images = sorted((jaffe_dir / "happy").iterdir())[:10] + sorted((jaffe_dir / "sadness").iterdir())[:10]
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    paths = [str(p) for p in images[:5]] + [str(text), "/no/such.png"] + [str(p) for p in images[5:]]
    one = list(recognise_many(paths, jobs=1))
    two = list(recognise_many(paths, jobs=2, chunk_size=3))
    assert [p for p, _ in one] == [p for p, _ in two] == paths
    assert isinstance(one[5][1], NotAnImageError) and isinstance(one[6][1], ImageNotFoundError)
    assert isinstance(two[5][1], NotAnImageError) and isinstance(two[6][1], ImageNotFoundError)
    for (_, a), (_, b) in zip(one, two):
        if not isinstance(a, Exception):
            assert a == b and len(a) == 1
    assert [r[0].label for p, r in one if "happy" in p][:5].count("happy") >= 4


def test_recognise_many_with_other_threads_running_does_not_fork(jaffe_dir, monkeypatch):
    """A process with other threads (a notebook kernel, a Dask client) must not fork: a forked
    worker can inherit a lock another thread held and wait on it for ever (seen under pytest-xdist
    after a Dask test). The workers are fresh processes then, with the same answers."""
    import multiprocessing
    import threading

    get_context = multiprocessing.get_context

    def no_fork(method=None):
        assert method != "fork", "a fork pool was started with another thread running"
        return get_context(method)

    monkeypatch.setattr(multiprocessing, "get_context", no_fork)

    paths = [str(p) for p in sorted((jaffe_dir / "happy").iterdir())[:6]]
    stop, held = threading.Event(), threading.Lock()

    def busy():
        with held:
            stop.wait(60)

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    try:
        two = list(recognise_many(paths, jobs=2, chunk_size=2))
    finally:
        stop.set()
        thread.join()
        monkeypatch.undo()
    assert two == list(recognise_many(paths, jobs=1))
    assert [faces[0].label for _, faces in two].count("happy") >= 4


def test_load_model_caches_and_reloads_a_replaced_file(tmp_path):
    assert load_model() is load_model() is load_model(classifiers.DEFAULT_MODEL)
    copy = tmp_path / "model.skops"
    shutil.copy(classifiers.DEFAULT_MODEL, copy)
    first = load_model(copy)
    assert load_model(str(copy)) is first
    os.utime(copy, ns=(1, 1))  # the file changed on disk: load it again
    assert load_model(copy) is not first


def test_docstring_examples_run():
    for module in (api_module,):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted >= 4 and result.failed == 0, module.__name__


def test_readme_python_example_runs(capsys):
    readme = (PROJECT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert "recognise" in code and len(code.strip().splitlines()) <= 4
    cwd = os.getcwd()
    os.chdir(PROJECT)
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert "happy" in out


# ---- the command line -------------------------------------------------------------------------

def test_the_group_lists_every_command_and_each_has_help():
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0
    for name in ("predict", "extract", "benchmark", "train", "evaluate", "reference"):
        assert name in result.output
        sub = CliRunner().invoke(cli.main, [name, "--help"])
        assert sub.exit_code == 0 and "Usage: main " not in sub.output and "--help" in sub.output, name


def test_shared_options_mean_the_same_everywhere():
    import click

    def option(command, name):
        return next(p for p in command.params if p.name == name)

    commands = {name: cli.LazyGroup().get_command(None, name) for name in cli.COMMANDS}
    jobs = [option(c, "jobs") for c in commands.values() if any(p.name == "jobs" for p in c.params)]
    assert len(jobs) >= 4 and {tuple(j.opts) for j in jobs} == {("-j", "--jobs")}
    quiet = [option(c, "quiet") for c in commands.values() if any(p.name == "quiet" for p in c.params)]
    assert len(quiet) >= 4 and {q.help for q in quiet} == {quiet[0].help}
    detectors = [option(commands[n], "detector") for n in ("predict", "extract", "evaluate")]
    assert {tuple(d.type.choices) for d in detectors} == {("auto", "hog", "cnn", "whole")}
    assert all(isinstance(option(commands[n], "backend").type, click.Choice) for n in ("extract", "train"))
    mirrors = [option(commands[n], "mirror") for n in ("predict", "evaluate", "video")]
    assert {(m.default, m.help) for m in mirrors} == {(True, mirrors[0].help)}


def test_console_script_and_module_give_the_same_answer(happy, run_python):
    by_module = run_python(["-m", "classifiers.predict", happy])
    by_group = run_python(["-m", "facial_expressions", "predict", happy])
    assert by_module.returncode == by_group.returncode == 0, by_group.stderr
    assert by_module.stdout == by_group.stdout and "happy" in by_group.stdout
    script = shutil.which("facial-expressions", path=os.path.dirname(os.sys.executable))
    assert script, "the console script facial-expressions is not installed (make install)"


@pytest.mark.parametrize("args, code, message", [
    (["nope"], 2, "error: No such command 'nope'."),
    (["predict", "/no/such.jpg"], 1, "error: /no/such.jpg: no such file"),
    (["predict", "x.jpg", "--json", "--csv"], 2, "error: choose one of --json and --csv"),
    (["predict", "x.jpg", "--csv", "--explain"], 2, "error: --explain shows in text, --json and --annotate pictures"),
    (["predict", "x.jpg", "--jobs", "0"], 2, "error: Invalid value for '-j' / '--jobs': 0 workers cannot run"),
    (["predict", "x.jpg", "--model", "/no/model.skops"], 1, "error: /no/model.skops: "),
])
def test_errors_are_one_line_with_an_exit_code(run_python, args, code, message):
    result = run_python(["-m", "facial_expressions", *args])
    errors = [line for line in result.stderr.splitlines() if not line.startswith("Usage:")]
    assert result.returncode == code and len(errors) == 1 and errors[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr


def test_a_full_stdout_is_one_line_not_a_traceback(happy):
    with open("/dev/full", "w") as full:
        import subprocess
        import sys

        result = subprocess.run([sys.executable, "-m", "facial_expressions", "predict", str(happy)], stdout=full,
                                stderr=subprocess.PIPE, text=True, cwd=PROJECT, timeout=120)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        "error: cannot write to standard output: No space left on device"]


# ---- layout -----------------------------------------------------------------------------------

def _imports(folder):
    """{module file: set of top-level package names it imports}."""
    out = {}
    for path in (PROJECT / folder).glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        out[path.name] = names
    return out


def test_layers_import_only_downwards():
    """common <- landmarks <- features <- classifiers <- facial_expressions (applications)."""
    below = {"common": set(), "landmarks": {"common"}, "features": {"common", "landmarks"},
             "classifiers": {"common", "landmarks", "features"}}
    project = {"common", "landmarks", "features", "classifiers", "facial_expressions"}
    for package, allowed in below.items():
        for module, names in _imports(package).items():
            assert (names & project) - allowed - {package} == set(), f"{package}/{module} imports upwards"


def test_predict_recommends_music_for_the_mood(happy, datasets_dir, tmp_path):
    catalogue = datasets_dir.parent / "music" / "deezer_mood.csv"
    result = CliRunner().invoke(predict_cli.main, [str(happy), "--json", "--recommend", str(catalogue),
                                                   "--mode", "lift", "--tracks", "5"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    rec = record["recommendation"]
    assert len(rec["tracks"]) == 5 and len({t["artist"].lower() for t in rec["tracks"]}) == 5
    assert rec["mode"] == "lift" and "happy" in rec["reason"]
    assert rec["target"]["valence"] == pytest.approx(record["faces"][0]["valence"], abs=1e-3)
    text = CliRunner().invoke(predict_cli.main, [str(happy), "--recommend", str(catalogue)])
    assert text.exit_code == 0 and text.output.count("https://") == 10 and "music: you look happy" in text.output
    bad = tmp_path / "bad.csv"
    bad.write_text("artist,title,valence\nA,B,0.1\n")
    failed = CliRunner().invoke(predict_cli.main, [str(happy), "--recommend", str(bad)])
    assert failed.exit_code == 1 and failed.output.strip().startswith(f"error: {bad}: missing column(s) 'arousal'")


def test_a_package_missing_from_a_smaller_install_is_one_line(tmp_path):
    """The README's prediction-only install lacks skops, SciPy, ...: --explain there ends in one line."""
    import subprocess
    import sys

    from conftest import PROJECT_DIR

    blocker = tmp_path / "sitecustomize.py"  # what a missing package looks like to the import system
    blocker.write_text("import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
                       "        if name.split('.')[0] in ('skops', 'shap'):\n"
                       "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
                       "sys.meta_path.insert(0, Block())\n")
    import matplotlib.cbook

    photo = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)  # a public-domain face
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{PROJECT_DIR}")
    result = subprocess.run([sys.executable, "-m", "classifiers.predict", str(photo), "--explain", "2"],
                            capture_output=True, text=True, env=env, cwd=PROJECT_DIR, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: this needs the Python package 'skops'")


def test_a_command_run_in_process_leaves_sigterm_as_it_found_it():
    """The commands turn SIGTERM into an interrupt only while they run: a program (or a test)
    calling one in-process gets its own SIGTERM handling back, and keeps a handler of its own."""
    import signal

    from common.cli import command

    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    seen = []

    @command()
    def probe():
        seen.append(signal.getsignal(signal.SIGTERM))

    try:
        probe.main([])
        assert len(seen) == 1 and seen[0] not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a caller's own choice is left alone
        probe.main([])
        assert seen[1] == signal.SIG_IGN and signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
