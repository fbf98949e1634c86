"""Flickr8k as distributed (the layout keras-io's and TensorFlow's captioning tutorials use).

    Flickr8k.token.txt            "1000268201_693b08cb0e.jpg#0<TAB>A child in a pink dress ..."
                                  (five captions per image, numbered #0 to #4)
    Flickr_8k.trainImages.txt     one image file name per line (6,000)
    Flickr_8k.devImages.txt       (1,000: the "val" split)
    Flickr_8k.testImages.txt      (1,000)
    Flicker8k_Dataset/            the JPEGs (sic: the archive's spelling; Flickr8k_Dataset/ too)

The text files may sit in the dataset's folder or in its `Flickr8k_text/` folder. Image ids are
the images' positions in the token file, from 1 (the COCO results format needs integers).
"""

import pathlib

from vlm_keras.data.formats.coco import make_caption_split
from vlm_keras.data.formats.reader import DatasetError, confined_path, has_words

TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}
IMAGE_FOLDERS = ("Flicker8k_Dataset", "Flickr8k_Dataset", "images")


def read_token_file(path):
    """{image file name: [captions]} in file order; DatasetError naming the line when malformed."""
    path = pathlib.Path(path)
    where = f"Flickr8k captions '{path}'"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DatasetError(f"{where} is not UTF-8 text: {error.reason}") from None
    captions = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        name, hash_sign, position = key.partition("#")
        if not tab or not hash_sign or not position.isdigit() or not name:
            raise DatasetError(f'{where}: line {number} is {line[:80]!r}; expected "<image>#<n><TAB><caption>"')
        if not has_words(caption):
            raise DatasetError(f"{where}: line {number} has no caption with words")
        captions.setdefault(name.strip(), []).append(caption.strip())
    if not captions:
        raise DatasetError(f"{where} holds no caption")
    return captions


def read_image_list(path):
    """The image file names of a split list, one per line, in file order."""
    names = [line.strip() for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"Flickr8k split list '{path}' is empty")
    return names


class Flickr8kFolder:
    """Flickr8k's original files in `root`; `split(name)` gives a `CaptionSplit` ("train", "val"
    (the dev list), "test"). `image_root` overrides where the images are."""

    def __init__(self, root, image_root=None):
        self.root = pathlib.Path(root)
        text = self.text_folder(self.root)
        if text is None:
            raise DatasetError(f"'{root}' holds no {TOKEN_FILE}")
        self.token_file = text / TOKEN_FILE
        self.captions = read_token_file(self.token_file)
        self.ids = {name: i for i, name in enumerate(self.captions, 1)}
        self.split_files = {s: text / f for s, f in SPLIT_FILES.items() if (text / f).is_file()}
        self.image_root = pathlib.Path(image_root) if image_root is not None else next(
            (self.root / f for f in IMAGE_FOLDERS if (self.root / f).is_dir()), None)
        if self.image_root is None:
            raise DatasetError(f"'{root}' holds {TOKEN_FILE} but none of the image folders "
                               f"{', '.join(IMAGE_FOLDERS)}")

    @staticmethod
    def text_folder(root):
        return next((folder for folder in (root, root / "Flickr8k_text") if (folder / TOKEN_FILE).is_file()), None)

    @property
    def splits(self):
        return list(self.split_files)

    def split(self, name, check_images=True):
        if name not in self.split_files:
            raise DatasetError(f"Flickr8k in '{self.root}' has no split '{name}' (no {SPLIT_FILES.get(name, name)}); "
                               f"splits: {', '.join(self.splits) or 'none'}")
        where = f"Flickr8k split list '{self.split_files[name]}'"
        names = read_image_list(self.split_files[name])
        unknown = [n for n in names if n not in self.captions]
        if unknown:
            raise DatasetError(f"{where}: {len(unknown)} images have no caption in {TOKEN_FILE}, e.g. {unknown[0]!r}")
        paths = [confined_path(self.image_root, n, where, f"image {n!r}", "name") for n in names]
        return make_caption_split(name, [self.ids[n] for n in names], paths, [self.captions[n] for n in names],
                                  [self.token_file, self.split_files[name]], self.image_root, where, check_images)
