"""Outputs never overwrite inputs, colliding outputs are made unique, and a failed output loses
nothing else: the prediction still prints, and the error names the file (issue 24, items 11-15)."""

import errno
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from classifiers import predict as predict_cli
from common.files import atomic_path
from conftest import PROJECT_DIR


@pytest.fixture()
def two_same_names(jaffe_dir, tmp_path):
    """a/face.tiff (happy) and b/face.tiff (surprise): the same file name in two folders."""
    for folder, source in (("a", "happy/KA.HA1.29.tiff"), ("b", "surprise/KA.SU1.36.tiff")):
        (tmp_path / folder).mkdir()
        shutil.copy(jaffe_dir / source, tmp_path / folder / "face.tiff")
    return tmp_path / "a" / "face.tiff", tmp_path / "b" / "face.tiff"


def test_same_named_images_get_distinct_annotations(two_same_names, tmp_path):
    a, b = two_same_names
    out = tmp_path / "out"
    result = CliRunner().invoke(predict_cli.main, [str(a), str(b), "--annotate", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ["face-2.png", "face.png"]
    assert (out / "face.png").read_bytes() != (out / "face-2.png").read_bytes()


def test_annotate_onto_the_input_is_refused_and_the_prediction_still_prints(two_same_names):
    a, _ = two_same_names
    before = a.read_bytes()
    result = CliRunner().invoke(predict_cli.main, [str(a), "--annotate", str(a)])
    assert result.exit_code == 1
    assert a.read_bytes() == before
    lines = result.output.strip().splitlines()
    assert lines[0] == f"{a}: 1 face" and "happy" in lines[1]
    assert lines[-1] == f"error: {a}: not annotated: the picture would overwrite this input image"


@pytest.mark.parametrize("name, reason", [("out.xyz", "cannot write an image as '.xyz' (use .png or .jpg)"),
                                          ("file/out.png", "Not a directory")])
def test_an_unwritable_annotation_is_one_line_after_the_prediction(two_same_names, tmp_path, name, reason):
    a, _ = two_same_names
    (tmp_path / "file").write_text("a file where a folder should be")
    dest = tmp_path / name
    result = CliRunner().invoke(predict_cli.main, [str(a), "--annotate", str(dest)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "happy" in lines[1]
    assert lines[-1].startswith("error: ") and reason in lines[-1] and "Traceback" not in result.output


def test_extract_refuses_to_write_over_a_dataset_image(jaffe_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(jaffe_dir / "happy", data / "happy")
    target = data / "happy" / "KA.HA1.29.tiff"
    before = target.read_bytes()
    result = subprocess.run([sys.executable, "-m", "features.extract", str(data), "-o", str(target), "-q"],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and target.read_bytes() == before
    assert result.stderr.strip().splitlines() == [
        f"error: {target}: this is an input of the dataset; choose another output file"]


@pytest.mark.parametrize("args", [["classifiers.predict", "{face}"], ["features.extract", "{folder}", "-o", "{table}"],
                                  ["classifiers.evaluate", "classifiers/models/default.skops", "{folder}", "-q"]])
def test_a_full_stdout_is_one_line(jaffe_dir, tmp_path, args):
    folder = tmp_path / "data" / "happy"
    folder.mkdir(parents=True)
    for name in sorted(os.listdir(jaffe_dir / "happy"))[:3]:
        shutil.copy(jaffe_dir / "happy" / name, folder)
    values = {"face": folder / sorted(os.listdir(folder))[0], "folder": folder.parent, "table": tmp_path / "t.npz"}
    command = [sys.executable, "-m"] + [a.format(**values) for a in args]
    with open("/dev/full", "w") as full:
        result = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, cwd=PROJECT_DIR, timeout=300)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == \
        "error: cannot write to standard output: No space left on device", result.stderr
    assert "Traceback" not in result.stderr


def test_a_newline_in_a_file_name_stays_on_one_line(jaffe_dir, tmp_path):
    odd = tmp_path / "two\nlines.tiff"
    shutil.copy(jaffe_dir / "happy" / "KA.HA1.29.tiff", odd)
    missing = tmp_path / "gone\nmissing.jpg"
    result = CliRunner().invoke(predict_cli.main, [str(odd), str(missing)])  # click 8.2+: stdout and stderr apart
    assert result.stdout.splitlines()[0] == f"{tmp_path}/two\\nlines.tiff: 1 face"
    assert result.stderr.splitlines() == [f"error: {tmp_path}/gone\\nmissing.jpg: no such file"]


def test_temporary_files_are_unpredictable_and_not_followed_through_a_symlink(tmp_path):
    dest = tmp_path / "out.json"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for guess in (f".out.json.tmp-{os.getpid()}", ".out.json.tmp"):  # the names an attacker could predict
        os.symlink(victim, tmp_path / guess)
    names = []
    for _ in range(2):
        with atomic_path(dest) as tmp:
            names.append(os.path.basename(tmp))
            assert not os.path.islink(tmp)
            with open(tmp, "w") as fh:
                fh.write("{}")
    assert victim.read_text() == "precious" and dest.read_text() == "{}"
    assert names[0] != names[1] and all(n.startswith(".out.json.tmp-") for n in names)
    assert oct(dest.stat().st_mode & 0o777) != oct(0o600)  # the usual permissions, not mkstemp's


def test_a_write_error_names_the_destination_not_the_temporary_file(tmp_path):
    dest = tmp_path / "table.npz"
    with pytest.raises(OSError) as caught:
        with atomic_path(dest):
            raise OSError(errno.ENOSPC, "No space left on device")  # as a write to a full disk raises it
    assert caught.value.filename == str(dest) and caught.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []
