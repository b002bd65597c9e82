"""Images a user can hand us (issue 11, 33): refused by name, and the one image loader's rule per mode
(16-bit, alpha, palette, CMYK, animated, EXIF).

Each case runs the console script under a memory cap in an empty folder (hostile.refused_in_one_line).
"""

from __future__ import annotations

import numpy as np
import pytest
from hostile import refused_in_one_line

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
    pytest.param(["predict", "{d}/gif-only"], "is a directory, not an image", id="predict-folder-as-image"),
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
