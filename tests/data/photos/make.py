"""Writes the badge photo test set tests/data/photos/ (SOURCES.md names each file's source and
expected.json its verdict). The public-domain and CC0 pictures come from the sample data that
the scikit-image and matplotlib wheels ship; neither is a dependency of the project: unpack
them in a scratch folder and point this script at it (run from the repository root):

    .venv/bin/pip download --no-deps -d /tmp/wheels scikit-image==0.26.0 matplotlib==3.11.2
    cd /tmp/wheels && unzip -o -q 'scikit_image-*.whl' 'skimage/data/*' \
        && unzip -o -q 'matplotlib-*.whl' 'matplotlib/mpl-data/sample_data/*' && cd -
    .venv/bin/python tests/data/photos/make.py /tmp/wheels

The files are committed; this script documents how they were made and makes them again."""
from __future__ import annotations

import os
import shutil
import sys

from PIL import Image, ImageDraw, ImageEnhance

HERE = os.path.dirname(os.path.abspath(__file__))
LIGHT = (232, 232, 228)
# The astronaut's head and shoulders in her portrait: the mottled light studio backdrop
# around them, the flag and the shuttle model left out.
HEAD = (120, 0, 330, 280)
ORIENTATION = 0x0112


def save(image: Image.Image, name: str, **kwargs) -> None:
    if name.endswith(".jpg"):
        image.convert("RGB").save(os.path.join(HERE, name), "JPEG", quality=88, **kwargs)
    else:
        image.save(os.path.join(HERE, name), "PNG", optimize=True)


def main(wheels: str) -> None:
    skimage = os.path.join(wheels, "skimage", "data")
    mpl = os.path.join(wheels, "matplotlib", "mpl-data", "sample_data")
    astronaut = Image.open(os.path.join(skimage, "astronaut.png")).convert("RGB")
    portrait = astronaut.crop(HEAD).resize((315, 420), Image.LANCZOS)

    save(portrait, "portrait.jpg")
    save(astronaut, "astronaut.jpg")
    shutil.copyfile(os.path.join(mpl, "grace_hopper.jpg"), os.path.join(HERE, "hopper.jpg"))
    # A phone's picture: the pixels lie on their side, the EXIF orientation (6: rotate 90°
    # clockwise to view) puts them upright.
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    save(portrait.transpose(Image.ROTATE_90), "portrait_exif_rotated.jpg", exif=exif)
    save(ImageEnhance.Brightness(portrait).enhance(0.25), "portrait_dark.jpg")
    far = Image.new("RGB", portrait.size, LIGHT)
    small = portrait.resize((portrait.width * 2 // 5, portrait.height * 2 // 5), Image.LANCZOS)
    far.paste(small, ((far.width - small.width) // 2, far.height - small.height))
    save(far, "portrait_far.jpg")
    two = Image.new("RGB", (portrait.width * 2, portrait.height), LIGHT)
    two.paste(portrait, (0, 0))
    two.paste(portrait, (portrait.width, 0))
    save(two, "two_faces.jpg")
    save(portrait.resize((75, 100), Image.LANCZOS), "tiny.jpg")
    save(Image.open(os.path.join(skimage, "chelsea.png")), "cat.jpg")
    save(Image.open(os.path.join(skimage, "coffee.png")), "coffee.jpg")
    save(Image.open(os.path.join(skimage, "camera.png")), "cameraman.jpg")
    # Drawn shapes are not a face: an oval "head" with two eyes and a mouth on a light ground.
    drawn = Image.new("RGB", (300, 400), LIGHT)
    pen = ImageDraw.Draw(drawn)
    pen.ellipse((70, 60, 230, 270), fill=(224, 180, 150))
    pen.ellipse((110, 130, 135, 150), fill=(40, 30, 30))
    pen.ellipse((165, 130, 190, 150), fill=(40, 30, 30))
    pen.arc((115, 180, 185, 230), 20, 160, fill=(120, 40, 40), width=5)
    pen.rectangle((40, 300, 260, 400), fill=(40, 50, 90))
    save(drawn, "drawn_face.png")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/wheels")
