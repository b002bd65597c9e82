"""Images a user can hand us (issue 11, 33): refused by name, and the one image loader's rule per mode
(16-bit, alpha, palette, CMYK, animated, EXIF); a shape no photo has preprocessed in bounded memory; the
preprocessing an image goes through and eval's --labels file (lines, encoding, the images they name).

Each case runs the console script under a memory cap in an empty folder (hostile.refused_in_one_line).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hostile import refused_in_one_line, sidecar

from mvit_deploy.artifact import tree_sha256

# (argv with {d} = the corpus (conftest.corpus) and {out} = a fresh output folder, words stderr must contain)
CASES = [
    pytest.param(
        ["predict", "{d}/bomb.png"],
        "too large to decode safely: 400,000,000 pixels, the limit is 89,478,485",
        id="predict-decompression-bomb",
    ),
    pytest.param(
        ["predict", "{d}/big.png"],
        "10000 x 10000 = 100,000,000 pixels, the limit is 89,478,485",
        id="predict-above-pixel-limit",
    ),
    pytest.param(["predict", "{d}/tiny.png"], "is 8 x 8 pixels, smaller than 16 on a side", id="predict-tiny-image"),
    pytest.param(["predict", "{d}/float.tif"], "floating-point pixels (mode F)", id="predict-float-image"),
    pytest.param(["predict", "{d}/truncated.png"], "cannot read image", id="predict-truncated-png"),
    pytest.param(["predict", "{d}/gif-only"], "gif-only is a directory, not a file", id="predict-folder-as-image"),
    pytest.param(["predict", "{d}/not-an-image.jpg"], "cannot read image", id="predict-text-as-jpg"),
    pytest.param(["predict", "{d}/empty.png"], "cannot read image", id="predict-empty-png"),
    pytest.param(["predict", "{d}/missing.jpg"], "does not exist", id="predict-missing-image"),
    pytest.param(
        ["export", "--target", "onnx", "--precision", "int8", "--calib-samples", "0", "--out", "{out}"],
        "--calib-samples 0",
        id="export-calib-samples-0",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--precision", "int8", "--calib", "{d}/empty-folder", "--out", "{out}"],
        "no images in",
        id="export-calib-empty",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--precision", "int8", "--calib", "{d}/text-only", "--out", "{out}"],
        "no images in",
        id="export-calib-no-images",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--precision", "int8", "--calib", "{d}/nowhere", "--out", "{out}"],
        "is not a directory",
        id="export-calib-missing",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--precision", "int8", "--calib", "{d}/calib-corrupt", "--out", "{out}"],
        "calib-corrupt/not-an-image.jpg",
        id="export-calib-corrupt-file",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--precision", "int8", "--calib", "{d}/calib-tiny", "--out", "{out}"],
        "calib-tiny/tiny.png is 8 x 8 pixels",
        id="export-calib-tiny-file",
    ),
    pytest.param(
        ["parity", "{d}/matching.onnx", "--images", "{d}/calib-corrupt"],
        "calib-corrupt/not-an-image.jpg",
        id="parity-images-corrupt-file",
    ),
    pytest.param(["parity", "{d}/matching.onnx", "--images", "{d}/text-only"], "no images in", id="parity-images-none"),
    pytest.param(
        ["parity", "{d}/matching.onnx", "--images", "{d}/calib-tiny"],
        "smaller than 16 on a side",
        id="parity-images-tiny",
    ),
    pytest.param(
        ["eval", "{d}/matching.onnx", "--data", "{d}/labeled"], "labeled/3/broken.png", id="eval-data-corrupt-file"
    ),
    pytest.param(["eval", "{d}/matching.onnx", "--data", "{d}/text-only"], "no images in", id="eval-data-no-images"),
]


@pytest.mark.parametrize("args, message", CASES)
def test_bad_image_is_refused_in_one_line(args, message, corpus, tmp_path):
    refused_in_one_line(args, message, corpus, tmp_path)


def test_16_bit_greyscale_decodes_to_the_same_input_as_its_8_bit_version(tmp_path):
    """Pillow's own convert("L") clips 16-bit values to 255 (an all-white image); the loader scales them."""
    from PIL import Image

    from mvit_deploy.inputs.preprocess import preprocess
    from mvit_deploy.models.config import HF_PREPROCESSING

    ramp = np.tile(np.arange(256, dtype=np.uint8), (256, 1))  # [256, 256] left-to-right gradient
    Image.fromarray(ramp, "L").save(tmp_path / "g8.png")
    Image.fromarray(ramp.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # 0..65535, the same picture
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    x8, x16 = (preprocess(tmp_path / f, 64, HF_PREPROCESSING) for f in ("g8.png", "g16.png"))
    np.testing.assert_array_equal(x8, x16)
    assert x16.max() - x16.min() > 0.8 and 0.45 < x16.mean() < 0.55  # a ramp (less the crop), not a white square


@pytest.mark.parametrize(
    "mode, make, expected",
    [
        ("RGBA transparent", lambda im: im.new("RGBA", (32, 32), (255, 0, 0, 0)), (255, 255, 255)),  # alpha on white
        ("RGBA opaque", lambda im: im.new("RGBA", (32, 32), (255, 0, 0, 255)), (255, 0, 0)),
        ("LA half", lambda im: im.new("LA", (32, 32), (0, 128)), (127, 127, 127)),
        ("CMYK", lambda im: im.new("CMYK", (32, 32), (0, 255, 255, 0)), (255, 0, 0)),
        ("I;16 mid grey", lambda im: im.new("I;16", (32, 32), 32896), (128, 128, 128)),
        ("1 bit", lambda im: im.new("1", (32, 32), 1), (255, 255, 255)),
    ],
)
def test_every_image_mode_becomes_the_rgb_it_shows(mode, make, expected):
    from PIL import Image

    from mvit_deploy.inputs.images import to_rgb

    rgb = to_rgb(make(Image))
    assert rgb.mode == "RGB" and tuple(np.asarray(rgb)[0, 0]) == expected, (mode, np.asarray(rgb)[0, 0])


def test_palette_transparency_animation_and_exif_rotation(tmp_path):
    from PIL import Image

    from mvit_deploy.inputs.images import load_image

    pal = Image.new("P", (32, 32), 0)
    pal.putpalette([0, 0, 255] * 256)
    pal.save(tmp_path / "p.gif", transparency=0)
    assert tuple(np.asarray(load_image(tmp_path / "p.gif"))[0, 0]) == (255, 255, 255)  # transparent index on white
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0))]
    for suffix in ("gif", "webp"):
        frames[0].save(tmp_path / f"anim.{suffix}", save_all=True, append_images=frames[1:], lossless=True)
        assert tuple(np.asarray(load_image(tmp_path / f"anim.{suffix}"))[0, 0]) == (255, 0, 0), (
            suffix
        )  # the first frame
    wide = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = wide.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    wide.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").size == (20, 40)


def test_folder_scanning_and_the_single_file_loader_accept_the_same_suffixes(tmp_path):
    from PIL import Image

    from mvit_deploy.inputs.images import IMAGE_SUFFIXES, image_files, load_image

    for suffix in IMAGE_SUFFIXES:
        Image.new("RGB", (32, 32), (1, 2, 3)).save(tmp_path / f"img{suffix}")
        assert load_image(tmp_path / f"img{suffix}").size == (32, 32)
    (tmp_path / "._img.jpg").write_bytes(b"macOS resource fork")  # hidden: skipped, not refused
    assert [p.suffix for p in image_files(tmp_path, check=True)] == sorted(IMAGE_SUFFIXES, key=lambda s: f"img{s}")
    only_gif = tmp_path / "gif-only"
    only_gif.mkdir()
    Image.new("RGB", (32, 32)).save(only_gif / "a.gif")
    assert image_files(only_gif) == [only_gif / "a.gif"]


THIN = (16, 5_000_000)  # 80 M pixels, under the 89 M limit; resized whole to 288 px wide: 288 x 90,000,000 (78 GB)


def thin_png(width: int, height: int) -> bytes:
    """A real ``width`` x ``height`` RGB PNG (every row one grey ramp), deflated as it is written: 0.7 MB, 1 s."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" + bytes(np.repeat(np.linspace(0, 255, width).astype(np.uint8), 3))  # filter 0, then the pixels
    z, rows = zlib.compressobj(6), 20_000
    idat = b"".join(z.compress(row * rows) for _ in range(height // rows)) + z.compress(row * (height % rows))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat + z.flush()) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def images_corpus(tmp_path_factory):
    """Issue 33's image and label files: a FIFO where an image is expected, --labels files broken line by line,
    an artifact whose preprocessing divides by a std of 0."""
    from PIL import Image

    d = tmp_path_factory.mktemp("images-33")
    (d / "thin.png").write_bytes(thin_png(*THIN))
    os.mkfifo(d / "fifo.png")
    (d / "data").mkdir()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(d / "data" / "good.png")
    os.mkfifo(d / "data" / "fifo.png")
    labels = {
        "no-separator": b"good.png\t3\ngood.png 3\n",
        "latin1": b"good.png\t3\n# caf\xe9\n",
        "missing-image": b"# path<TAB>label\nnowhere.png\t3\n",
        "fifo-image": b"fifo.png\t3\n",
        "bad-label": b"good.png\tcat\n",
        "out-of-range": b"good.png,10\n",
        "comments-only": b"# nothing here\n\n",
    }
    for name, text in labels.items():
        (d / f"labels-{name}.tsv").write_bytes(text)
    os.mkfifo(d / "labels-fifo.tsv")
    std0 = {"mean": [0, 0, 0], "std": [0, 0, 0]}
    for name, overrides in (("matching.onnx", {}), ("zero-std.onnx", std0)):
        (d / name).write_bytes(os.urandom(1000))
        manifest = sidecar(name, sha256=tree_sha256(d / name))
        manifest["input"].update(overrides)
        manifest["input"]["preprocessing"].update(overrides)
        (d / name).with_suffix(".json").write_text(json.dumps(manifest))
    return d


EVAL = ["eval", "{d}/matching.onnx", "--data", "{d}/data", "--labels"]
# (argv with {d} = images_corpus, words stderr must contain): each refused before any model loads
MORE_CASES = [
    pytest.param(["predict", "{d}/fifo.png"], "fifo.png is a named pipe (FIFO), not a file", id="predict-fifo-image"),
    pytest.param(
        [*EVAL, "{d}/labels-no-separator.tsv"],
        "labels-no-separator.tsv line 2 ('good.png 3') has no tab or comma",
        id="eval-labels-no-separator",
    ),
    pytest.param(
        [*EVAL, "{d}/labels-latin1.tsv"], "labels-latin1.tsv line 2 is not UTF-8 text", id="eval-labels-not-utf8"
    ),
    pytest.param(
        [*EVAL, "{d}/labels-fifo.tsv"], "labels-fifo.tsv is a named pipe (FIFO), not a file", id="eval-labels-fifo"
    ),
    pytest.param(
        [*EVAL, "{d}/labels-missing-image.tsv"],
        "labels-missing-image.tsv line 2: image",  # ... data/nowhere.png does not exist
        id="eval-labels-missing-image",
    ),
    pytest.param(
        [*EVAL, "{d}/labels-fifo-image.tsv"],
        "data/fifo.png is a named pipe (FIFO), not a file",
        id="eval-labels-fifo-image",
    ),
    pytest.param(
        [*EVAL, "{d}/labels-bad-label.tsv"],
        "labels-bad-label.tsv line 1: label 'cat' is neither a class index nor a synset id",
        id="eval-labels-not-a-class",
    ),
    pytest.param(
        [*EVAL, "{d}/labels-out-of-range.tsv"],
        "labels-out-of-range.tsv line 1: class index 10 is outside 0..9",
        id="eval-labels-class-out-of-range",
    ),
    pytest.param([*EVAL, "{d}/labels-comments-only.tsv"], "has no entries", id="eval-labels-empty"),
    pytest.param(
        ["eval", "{d}/matching.onnx", "--labels", "{d}/labels-bad-label.tsv"],
        "--labels names images under --data",
        id="eval-labels-without-data",
    ),
    # the manifest's own schema may refuse it first; either way the message names the std, not the weights
    pytest.param(["parity", "{d}/zero-std.onnx"], "std", id="parity-preprocessing-std-zero"),
]


@pytest.mark.parametrize("args, message", MORE_CASES)
def test_bad_image_or_labels_is_refused_in_one_line(args, message, images_corpus, tmp_path):
    refused_in_one_line(args, message, images_corpus, tmp_path)


def test_a_shape_no_photo_has_is_preprocessed_in_the_memory_of_its_decode(images_corpus):
    """16 x 5,000,000 px is under the pixel limit, but resized whole to 288 px on its short side it becomes
    288 x 90,000,000 (78 GB; the whole resize died with MemoryError under 8 GB). Only the crop is resampled now:
    the run fits a 2 GB address space (measured peak RSS 0.73 GB, the decoded image and its RGB copy)."""
    code = (
        "import json, sys, numpy as np\n"
        "from mvit_deploy.inputs.preprocess import preprocess\n"
        "from mvit_deploy.models.config import HF_PREPROCESSING\n"
        "x = preprocess(sys.argv[1], 256, HF_PREPROCESSING)\n"
        "print(json.dumps([x.shape, bool((x == x[:, :1]).all()), bool((np.diff(x, axis=2) >= 0).all()), "
        "float(np.ptp(x))]))\n"
    )

    def cap():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    result = subprocess.run(
        [sys.executable, "-c", code, str(images_corpus / "thin.png")],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=cap,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    shape, rows_alike, rising, spread = json.loads(result.stdout)
    assert shape == [3, 256, 256] and rows_alike and rising and spread > 0.5  # the centre of a horizontal ramp


def _whole_resize_then_crop(image, size, pre):
    """The centre crop as HF's and timm's processors make it: resize the whole image, then crop."""
    short = round(size / pre.crop_pct)
    w, h = image.size
    nw, nh = (short, max(short, round(h * short / w))) if w <= h else (max(short, round(w * short / h)), short)
    left, top = (nw - size) // 2, (nh - size) // 2
    resample = {"bilinear": 2, "bicubic": 3}[pre.interpolation]
    return image.resize((nw, nh), resample=resample).crop((left, top, left + size, top + size))


def test_photos_take_the_whole_resize_and_the_crop_only_resize_stays_within_two_levels(monkeypatch):
    """Under the pixel limit the crop is bit for bit the whole resize's (tests/test_cli.py also holds it to HF's
    processor). Above it only the crop is resampled: on photos, at most 2 of 255 levels from the whole resize
    (Pillow orders its two passes by the intermediate's size, so roundings differ), measured 0.09 levels on
    average over the shipped photos."""
    from PIL import Image

    from mvit_deploy.inputs import preprocess as pp
    from mvit_deploy.inputs.datasets.fashion_mnist import FASHION_PREPROCESSING
    from mvit_deploy.models.config import HF_PREPROCESSING, TIMM_PREPROCESSING, V2_TIMM_PREPROCESSING

    limit = pp.MAX_PIXELS
    for name in ("chelsea", "coffee", "astronaut"):
        photo = Image.open(f"mvit_deploy/inputs/calibration/photos/{name}.jpg").convert("RGB")
        w, h = photo.size
        for shape in ((w, h), (w // 8, h * 2), (w * 3, h // 6)):  # as shot, a tall strip, a wide strip
            image = photo.resize(shape)
            for pre, size in ((HF_PREPROCESSING, 256), (TIMM_PREPROCESSING, 320), (V2_TIMM_PREPROCESSING, 64)):
                whole = np.asarray(_whole_resize_then_crop(image, size, pre), np.int16)
                monkeypatch.setattr(pp, "MAX_PIXELS", limit)
                np.testing.assert_array_equal(np.asarray(pp.resize_center_crop(image, size, pre)), whole)
                monkeypatch.setattr(pp, "MAX_PIXELS", 0)  # every image above the limit: the crop-only path
                apart = np.abs(np.asarray(pp.resize_center_crop(image, size, pre), np.int16) - whole)
                assert apart.max() <= 2 and apart.mean() < 0.25, (name, shape, pre, size, apart.max(), apart.mean())
    for size in (64, 128):  # Fashion-MNIST's 28 px, upscaled
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), np.uint8)).convert("RGB")
        monkeypatch.setattr(pp, "MAX_PIXELS", limit)
        assert np.array_equal(
            np.asarray(pp.resize_center_crop(image, size, FASHION_PREPROCESSING)),
            np.asarray(_whole_resize_then_crop(image, size, FASHION_PREPROCESSING)),
        )


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("std", (0, 0, 0), "the preprocessing std [0, 0, 0] is not 3 finite numbers above 0"),
        ("std", (1.0, float("nan"), 1.0), "std [1.0, nan, 1.0]"),
        ("mean", (0, 0), "mean [0, 0] is not 3 finite numbers"),
        ("crop_pct", 0, "crop_pct 0 is not in (0, 1]"),
        ("interpolation", "lanczos", "interpolation 'lanczos' is not bilinear or bicubic"),
        ("channel_order", "rgb", "channel_order 'rgb' is not RGB or BGR"),
        ("scale", float("inf"), "scale inf is not a finite number above 0"),
    ],
)
def test_impossible_preprocessing_is_refused_by_name_not_blamed_on_the_weights(field, value, words):
    """A std of 0 made every input infinite and the reference's NaN logits said "check the checkpoint's weights"."""
    from mvit_deploy.errors import UsageError
    from mvit_deploy.inputs.preprocess import Preprocessing

    with pytest.raises(UsageError) as e:
        Preprocessing(**{field: value})
    assert words in e.value.problem and "input.preprocessing" in e.value.fix
