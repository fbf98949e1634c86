"""The published dataset layouts, read as they are downloaded, and how a folder's layout is found.

Captions (`detect_captions`), the first that matches:

- Karpathy's splits: `dataset_coco.json`, `dataset_flickr8k.json` or `dataset_flickr30k.json` (in the
  folder or its `annotations/`), with the images in the dataset's own folder (`formats.karpathy`);
- COCO 2014 / 2017 as distributed: `annotations/captions_train2014.json` (or 2017) with `train2014/`
  (or `images/train2014/`); splits "train" and "val";
- Flickr8k's original files: `Flickr8k.token.txt` and the `Flickr_8k.*Images.txt` lists with
  `Flicker8k_Dataset/` (`formats.flickr8k`);
- this project's layout: `annotations/captions_<split>.json` with `<split>/` or `images/<split>/`.

VQA (`detect_vqa`): this project's layout (`annotations/questions_<split>.json` and
`vqa_<split>.json`), or VQA v2 as distributed (`v2_OpenEnded_mscoco_<subtype>_questions.json`,
`v2_mscoco_<subtype>_annotations.json`, in the folder or its `annotations/`, with the COCO image
folders): splits "train", "val", and "test" / "test-dev" (questions without answers: they can be
answered and written in the results format, not scored).

Anything else is given explicitly (`ExplicitCaptions`, `ExplicitVQA`): annotation files per split and
the image folder. A folder that matches no layout gets one error listing the layouts looked for and
what the folder holds. Each layout reads a file once, however many splits come from it.
"""

import functools
import pathlib

from vlm_keras.data.formats.coco import list_caption_splits, load_coco_captions
from vlm_keras.data.formats.flickr8k import Flickr8kFolder
from vlm_keras.data.formats.karpathy import KARPATHY_FILES, KarpathyFile
from vlm_keras.data.formats.reader import DatasetError, order_splits
from vlm_keras.data.formats.vqa import load_vqa, vqa_files

CAPTION_LAYOUTS = ("Karpathy's splits (dataset_coco.json, dataset_flickr8k.json or dataset_flickr30k.json)",
                   "COCO 2014/2017 (annotations/captions_train2014.json with train2014/)",
                   "Flickr8k (Flickr8k.token.txt with Flicker8k_Dataset/)",
                   "annotations/captions_<split>.json with <split>/ or images/<split>/")
VQA_LAYOUTS = ("VQA v2 (v2_OpenEnded_mscoco_train2014_questions.json, v2_mscoco_train2014_annotations.json, "
               "train2014/)",
               "annotations/questions_<split>.json and annotations/vqa_<split>.json with <split>/")


def _image_folder(root, name):
    """`root/name`, else `root/images/name`, else None."""
    return next((folder for folder in (root / name, root / "images" / name) if folder.is_dir()), None)


def _no_split(root, layout, name, splits):
    return DatasetError(f"{layout} in '{root}' has no split '{name}'; splits: {', '.join(splits) or 'none'}")


class ProjectCaptions:
    """This project's layout: one COCO captions file per split, `annotations/captions_<split>.json`,
    with its images in `<split>/` or `images/<split>/`."""

    layout = "COCO captions per split"

    def __init__(self, root):
        self.root = pathlib.Path(root)

    @property
    def splits(self):
        return list_caption_splits(self.root)

    def split(self, name, check_images=True):
        annotation_file = self.root / "annotations" / f"captions_{name}.json"
        if not annotation_file.is_file():
            raise _no_split(self.root, self.layout, name, self.splits)
        images = _image_folder(self.root, name) or self.root / name  # a missing one is named by the loader
        return load_coco_captions(annotation_file, images, name, check_images)


class CocoCaptions:
    """COCO 2014 or 2017 as distributed: "train" and "val" are `captions_train<year>.json` with
    `train<year>/` and `captions_val<year>.json` with `val<year>/`."""

    def __init__(self, root, year):
        self.root, self.year = pathlib.Path(root), year
        self.layout = f"COCO {year}"

    @property
    def splits(self):
        return [s for s in ("train", "val") if (self.root / "annotations" / f"captions_{s}{self.year}.json").is_file()]

    def split(self, name, check_images=True):
        subset = name if name.endswith(self.year) else f"{name}{self.year}"
        annotation_file = self.root / "annotations" / f"captions_{subset}.json"
        if not annotation_file.is_file():
            raise _no_split(self.root, self.layout, name, self.splits)
        images = _image_folder(self.root, subset) or self.root / subset
        return load_coco_captions(annotation_file, images, name, check_images)


class KarpathyCaptions:
    """Karpathy's splits of COCO, Flickr8k or Flickr30k (see `formats.karpathy`); "restval" joins
    "train" unless `restval_to_train=False`."""

    # Where the images may be, by dataset; COCO's "filepath" (train2014, val2014) is inside it.
    IMAGE_FOLDERS = {"coco": (".", "images"), "flickr8k": ("Flicker8k_Dataset", "Flickr8k_Dataset", "images"),
                     "flickr30k": ("flickr30k-images", "images")}

    def __init__(self, root, path, restval_to_train=True, image_root=None):
        self.root, self.path, self.restval_to_train = pathlib.Path(root), pathlib.Path(path), restval_to_train
        self.image_root = image_root
        self.layout = f"Karpathy's splits ({self.path.name})"

    @functools.cached_property
    def file(self):
        dataset = self.path.stem.removeprefix("dataset_")
        root = self.image_root
        if root is None:
            folders = self.IMAGE_FOLDERS.get(dataset, ("images",))
            # COCO's folder is the one that holds train2014/ or val2014/ ("." always exists).
            holds = ((lambda f: (f / "val2014").is_dir() or (f / "train2014").is_dir()) if dataset == "coco"
                     else pathlib.Path.is_dir)
            root = next((self.root / f for f in folders if holds(self.root / f)), self.root / folders[0])
        return KarpathyFile(self.path, root, self.restval_to_train)

    @property
    def splits(self):
        return self.file.splits

    def split(self, name, check_images=True):
        if name not in self.splits:
            raise _no_split(self.root, self.layout, name, self.splits)
        return self.file.split(name, check_images)


class Flickr8kCaptions:
    """Flickr8k's original files (see `formats.flickr8k`)."""

    layout = "Flickr8k"

    def __init__(self, root, image_root=None):
        self.root, self.image_root = pathlib.Path(root), image_root

    @functools.cached_property
    def folder(self):
        return Flickr8kFolder(self.root, self.image_root)

    @property
    def splits(self):
        return self.folder.splits

    def split(self, name, check_images=True):
        return self.folder.split(name, check_images)


class ExplicitCaptions:
    """Annotation files named per split, with their image folder(s): each file is COCO captions
    JSON, a Karpathy split file (then its own splits), or a Flickr8k token file (with its split
    lists beside it).

    Args:
        annotations: {split: file}; a Karpathy or Flickr8k file may be given alone (any key).
        images: the image folder, or {split: folder}.
    """

    layout = "annotation files given explicitly"

    def __init__(self, annotations, images):
        self.annotations = {name: pathlib.Path(path) for name, path in annotations.items()}
        self.images = images
        for name, path in self.annotations.items():
            if not path.is_file():
                raise DatasetError(f"annotations '{path}' (split '{name}') does not exist")
        self.root = next(iter(self.annotations.values())).parent
        self._inner = None
        if len(self.annotations) == 1:
            path = next(iter(self.annotations.values()))
            if path.name.endswith(".token.txt"):
                self._inner = Flickr8kCaptions(path.parent, image_root=self._images(None))
            elif _is_karpathy(path):
                self._inner = KarpathyCaptions(path.parent, path, image_root=pathlib.Path(self._images(None)))

    def _images(self, name):
        if isinstance(self.images, dict):
            if name not in self.images:
                raise DatasetError(f"no image folder for split '{name}' (images given for "
                                   f"{', '.join(self.images)})")
            return self.images[name]
        if self.images is None:
            raise DatasetError("annotations given without their image folder (images=/--images)")
        return self.images

    @property
    def splits(self):
        return self._inner.splits if self._inner is not None else order_splits(self.annotations)

    def split(self, name, check_images=True):
        if self._inner is not None:
            return self._inner.split(name, check_images)
        if name not in self.annotations:
            raise _no_split(self.root, self.layout, name, self.splits)
        return load_coco_captions(self.annotations[name], self._images(name), name, check_images)


@functools.lru_cache(maxsize=64)
def _is_karpathy(path):
    with open(path, "rb") as file:
        head = file.read(4096)
    return b'"sentences"' in head or b'"dataset"' in head and b'"imgid"' in head


def detect_captions(root):
    """The captions layout of a folder (see the module docstring); DatasetError listing the layouts
    looked for and what the folder holds when none matches."""
    root = pathlib.Path(root)
    for folder in (root, root / "annotations"):
        for name in KARPATHY_FILES:
            if (folder / name).is_file():
                return KarpathyCaptions(root, folder / name)
    for year in ("2014", "2017"):
        if (root / "annotations" / f"captions_train{year}.json").is_file():
            return CocoCaptions(root, year)
    if Flickr8kFolder.text_folder(root) is not None:
        return Flickr8kCaptions(root)
    if list_caption_splits(root):
        return ProjectCaptions(root)
    raise DatasetError(f"data folder '{root}' matches none of the captions layouts looked for: "
                       f"{'; '.join(CAPTION_LAYOUTS)}. It holds: {_listing(root)}. Give the annotation "
                       "files and the image folder explicitly with annotations= and images= (--annotations, "
                       "--images)")


class ProjectVQA:
    """This project's VQA layout: `annotations/questions_<split>.json` and `vqa_<split>.json`."""

    layout = "VQA v2 files per split"

    def __init__(self, root):
        self.root = pathlib.Path(root)

    @property
    def splits(self):
        names = [p.name[len("questions_"):-len(".json")] for p in (self.root / "annotations").glob("questions_*.json")]
        return order_splits(names)

    def split(self, name, check_images=True):
        questions, annotations = vqa_files(self.root, name)
        if not questions.is_file():
            raise _no_split(self.root, self.layout, name, self.splits)
        images = _image_folder(self.root, name) or self.root / name
        return load_vqa(questions, annotations if annotations.is_file() else None, images, name, check_images)


class VqaV2:
    """VQA v2 as distributed, with the COCO image folders."""

    layout = "VQA v2"
    SUBTYPES = {"train": ("train2014", "train2014"), "val": ("val2014", "val2014"),
                "test": ("test2015", "test2015"), "test-dev": ("test-dev2015", "test2015")}

    def __init__(self, root):
        self.root = pathlib.Path(root)

    def _file(self, name):
        return next((folder / name for folder in (self.root, self.root / "annotations", self.root / "Questions",
                                                  self.root / "Annotations") if (folder / name).is_file()), None)

    def _files(self, split):
        subtype = self.SUBTYPES[split][0]
        return (self._file(f"v2_OpenEnded_mscoco_{subtype}_questions.json"),
                self._file(f"v2_mscoco_{subtype}_annotations.json"))

    @property
    def splits(self):
        return [s for s in self.SUBTYPES if self._files(s)[0] is not None]

    def split(self, name, check_images=True):
        if name not in self.SUBTYPES or self._files(name)[0] is None:
            raise _no_split(self.root, self.layout, name, self.splits)
        questions, annotations = self._files(name)
        image_subtype = self.SUBTYPES[name][1]
        images = _image_folder(self.root, image_subtype) or self.root / image_subtype
        return load_vqa(questions, annotations, images, name, check_images, image_subtype=image_subtype)


class ExplicitVQA:
    """VQA v2 questions files named per split, with optional annotation files and the image folder(s)."""

    layout = "VQA files given explicitly"

    def __init__(self, questions, annotations, images):
        self.questions = {name: pathlib.Path(path) for name, path in questions.items()}
        self.annotations = {name: pathlib.Path(path) for name, path in (annotations or {}).items()}
        self.images = images
        for name, path in [*self.questions.items(), *self.annotations.items()]:
            if not path.is_file():
                raise DatasetError(f"'{path}' (split '{name}') does not exist")
        unmatched = sorted(set(self.annotations) - set(self.questions))
        if unmatched:
            raise DatasetError(f"annotations for split(s) {', '.join(unmatched)} have no questions file")
        self.root = next(iter(self.questions.values())).parent

    @property
    def splits(self):
        return order_splits(self.questions)

    def split(self, name, check_images=True):
        if name not in self.questions:
            raise _no_split(self.root, self.layout, name, self.splits)
        images = self.images.get(name) if isinstance(self.images, dict) else self.images
        if images is None:
            raise DatasetError(f"no image folder for split '{name}' (images=/--images)")
        return load_vqa(self.questions[name], self.annotations.get(name), images, name, check_images)


def detect_vqa(root):
    """The VQA layout of a folder; DatasetError listing the layouts looked for when none matches."""
    root = pathlib.Path(root)
    if list((root / "annotations").glob("questions_*.json")):
        return ProjectVQA(root)
    if VqaV2(root).splits:
        return VqaV2(root)
    raise DatasetError(f"data folder '{root}' matches none of the VQA layouts looked for: {'; '.join(VQA_LAYOUTS)}. "
                       f"It holds: {_listing(root)}. Give the files explicitly with questions=, annotations= and "
                       "images= (--questions, --annotations, --images)")


def _listing(root, most=12):
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir()) if root.is_dir() else []
    if (root / "annotations").is_dir():
        names += sorted(f"annotations/{p.name}" for p in (root / "annotations").iterdir())
    shown = ", ".join(names[:most]) + (f", ... ({len(names)} entries)" if len(names) > most else "")
    return shown or "nothing"
