"""Karpathy's splits: `dataset_coco.json`, `dataset_flickr8k.json`, `dataset_flickr30k.json`.

The splits every captioning paper since Karpathy & Fei-Fei (2015) reports on. One file per
dataset:

    {"dataset": "coco" | "flickr8k" | "flickr30k",
     "images": [{"split": "train" | "restval" | "val" | "test",
                 "filename": "COCO_val2014_000000391895.jpg",
                 "filepath": "val2014",            (COCO only: the image's folder)
                 "imgid": 0, "cocoid": 391895,      (cocoid: COCO only)
                 "sentences": [{"raw": "A man with a red helmet ...", "tokens": [...], ...}, ...],
                 "sentids": [...]}, ...]}

The images live in the dataset's own folder: COCO's `train2014/` and `val2014/` (named by
`filepath`), `Flicker8k_Dataset/` (sic, as Flickr8k's archive spells it), `flickr30k-images/`.
"restval" (30,504 COCO val2014 images that are in neither Karpathy val nor test) joins "train"
by default, as the papers train (`restval_to_train`).
"""

import pathlib

from vlm_keras.data.formats.coco import make_caption_split
from vlm_keras.data.formats.reader import (DatasetError, confined_path, entry_name, has_words, is_int, json_kind,
                                           read_json_object, require_list)

KARPATHY_FILES = ("dataset_coco.json", "dataset_flickr8k.json", "dataset_flickr30k.json")
KARPATHY_SPLITS = ("train", "restval", "val", "test")


class KarpathyFile:
    """One Karpathy split file, read and validated once; `split(name)` gives a `CaptionSplit`.

    Args:
        path: the `dataset_*.json` file.
        image_root: the folder `filename` (with `filepath` for COCO) is relative to.
        restval_to_train: "train" includes the "restval" images (the papers' setting).
    """

    def __init__(self, path, image_root, restval_to_train=True):
        self.path = pathlib.Path(path)
        self.image_root = pathlib.Path(image_root)
        self.restval_to_train = restval_to_train
        self.where = f"Karpathy split file '{self.path}'"
        content = read_json_object(self.path, self.where, ("images", "dataset"))
        self.dataset = content.get("dataset")
        if not isinstance(self.dataset, str):
            raise DatasetError(f'{self.where}: has no str "dataset" (expected "coco", "flickr8k" or "flickr30k")')
        self.entries = [self._parse(index, image) for index, image in
                        enumerate(require_list(content, "images", self.where))]
        if not self.image_root.is_dir():
            raise DatasetError(f"{self.where}: image folder '{self.image_root}' does not exist")

    @property
    def splits(self):
        present = {entry["split"] for entry in self.entries}
        names = [name for name in ("train", "val", "test") if name in present or
                 (name == "train" and self.restval_to_train and "restval" in present)]
        return names + (["restval"] if "restval" in present else [])

    def split(self, name, check_images=True):
        wanted = {"train", "restval"} if name == "train" and self.restval_to_train else {name}
        chosen = [entry for entry in self.entries if entry["split"] in wanted]
        if not chosen:
            raise DatasetError(f"{self.where}: no image is in split '{name}'; splits: {', '.join(self.splits)}")
        paths = [confined_path(self.image_root, entry["relative"], self.where, entry["name"], "filename")
                 for entry in chosen]
        return make_caption_split(name, [entry["id"] for entry in chosen], paths,
                                  [entry["captions"] for entry in chosen], [self.path], self.image_root,
                                  self.where, check_images)

    def _parse(self, index, image):
        name = entry_name("image", index, image, "imgid")
        if not isinstance(image, dict):
            raise DatasetError(f"{self.where}: {name} is {json_kind(image)}; expected an object")
        split, filename = image.get("split"), image.get("filename")
        if split not in KARPATHY_SPLITS:
            raise DatasetError(f"{self.where}: {name} has split {split!r}; expected one of {', '.join(KARPATHY_SPLITS)}")
        if not isinstance(filename, str) or not filename:
            raise DatasetError(f'{self.where}: {name} has no str "filename"')
        image_id = image.get("cocoid", image.get("imgid"))
        if not is_int(image_id):
            raise DatasetError(f'{self.where}: {name} has no int "cocoid" or "imgid"')
        folder = image.get("filepath", "")
        if not isinstance(folder, str):
            raise DatasetError(f'{self.where}: {name} "filepath" is {json_kind(folder)}; expected a str')
        sentences = image.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise DatasetError(f'{self.where}: {name} has no "sentences" list')
        captions = []
        for position, sentence in enumerate(sentences):
            raw = sentence.get("raw") if isinstance(sentence, dict) else None
            if not isinstance(raw, str) or not has_words(raw):
                raise DatasetError(f'{self.where}: {name} sentence #{position} has no "raw" caption with words')
            captions.append(raw.strip())
        return {"split": split, "relative": str(pathlib.PurePosixPath(folder) / filename) if folder else filename,
                "id": image_id, "captions": captions, "name": name}
