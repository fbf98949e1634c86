"""Tiny datasets written in exactly the layouts their publishers distribute, from each dataset's
documentation: file names, JSON fields and nesting, Flickr8k's "#n" caption numbering, Karpathy's
"restval". The images are small JPEGs of coloured blocks, so a model can learn something."""

import io
import json

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 180, 60)}


def photo(path, colour, seed=0, size=(40, 32), mode="RGB", exif_orientation=None, quality=90):
    """A JPEG of a `colour` block on a noisy background (what its captions say), written to `path`."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(90, 160, (size[1], size[0], 3), dtype=np.uint8)
    pixels[size[1] // 4: 3 * size[1] // 4, size[0] // 4: 3 * size[0] // 4] = COLOURS[colour]
    image = Image.fromarray(pixels).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": quality}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        options["exif"] = exif.tobytes()
    image.save(path, "JPEG", **options)
    return path


def captions_for(colour, k):
    return [f"a {colour} block in the middle", f"there is a {colour} square", f"a picture with a {colour} block",
            f"the {colour} block is in the center", f"one {colour} square on grey"][:k]


def _images(n, offset=0):
    colours = list(COLOURS)
    return [(offset + i + 1, colours[(offset + i) % len(colours)]) for i in range(n)]


def coco(root, year="2014", counts=(12, 6)):
    """COCO as distributed: annotations/captions_<subset><year>.json + <subset><year>/ folders."""
    for subset, count, offset in (("train", counts[0], 0), ("val", counts[1], 100)):
        name = f"{subset}{year}"
        images, annotations = [], []
        for image_id, colour in _images(count, offset):
            file_name = f"COCO_{name}_{image_id:012d}.jpg" if year == "2014" else f"{image_id:012d}.jpg"
            photo(root / name / file_name, colour, seed=image_id)
            images.append({"license": 3, "file_name": file_name, "coco_url": f"http://images.cocodataset.org/{name}/"
                           f"{file_name}", "height": 32, "width": 40, "date_captured": "2013-11-14 11:18:45",
                           "flickr_url": "http://farm.staticflickr.com/x.jpg", "id": image_id})
            for caption in captions_for(colour, 5):
                annotations.append({"image_id": image_id, "id": len(annotations) + 1000 * image_id, "caption": caption})
        content = {"info": {"description": f"COCO {year} Dataset", "year": int(year)}, "licenses": [],
                   "images": images, "annotations": annotations}
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"captions_{name}.json").write_text(json.dumps(content))
    return root


def karpathy(root, dataset, counts=None):
    """dataset_<dataset>.json with its images in the dataset's folder; COCO's files in train2014/ and
    val2014/ named by "filepath", with a "restval" split."""
    counts = counts or {"train": 9, "restval": 3, "val": 4, "test": 4}
    folder = {"flickr8k": "Flicker8k_Dataset", "flickr30k": "flickr30k-images"}.get(dataset)
    images, sentid = [], 0
    for split, count in counts.items():
        for image_id, colour in _images(count, offset=len(images)):
            entry = {"split": split, "imgid": image_id - 1, "sentids": [], "sentences": []}
            if dataset == "coco":
                entry["filepath"] = "train2014" if split == "train" else "val2014"
                entry["filename"] = f"COCO_{entry['filepath']}_{image_id:012d}.jpg"
                entry["cocoid"] = image_id
                photo(root / entry["filepath"] / entry["filename"], colour, seed=image_id)
            else:
                entry["filename"] = f"{1000 + image_id}_{image_id:04x}abcd.jpg"
                photo(root / folder / entry["filename"], colour, seed=image_id)
            for caption in captions_for(colour, 5):
                entry["sentences"].append({"tokens": caption.split(), "raw": caption.capitalize() + ".",
                                           "imgid": entry["imgid"], "sentid": sentid})
                entry["sentids"].append(sentid)
                sentid += 1
            images.append(entry)
    (root / f"dataset_{dataset}.json").write_text(json.dumps({"images": images, "dataset": dataset}))
    return root


def flickr8k(root, counts=(10, 4, 4)):
    """Flickr8k's original files: Flickr8k_text/Flickr8k.token.txt ("<image>#<n>\\t<caption>") and the
    train/dev/test lists, images in Flicker8k_Dataset/."""
    lines, lists = [], {}
    offset = 0
    for split, count in zip(("trainImages", "devImages", "testImages"), counts):
        names = []
        for image_id, colour in _images(count, offset):
            name = f"{3000 + image_id}_{image_id:06x}.jpg"
            photo(root / "Flicker8k_Dataset" / name, colour, seed=image_id)
            lines += [f"{name}#{k}\t{caption.capitalize()} ." for k, caption in enumerate(captions_for(colour, 5))]
            names.append(name)
        offset += count
        lists[split] = names
    text = root / "Flickr8k_text"
    text.mkdir(parents=True, exist_ok=True)
    (text / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    for split, names in lists.items():
        (text / f"Flickr_8k.{split}.txt").write_text("\n".join(names) + "\n")
    return root


def vqa_v2(root, counts=(12, 6, 4)):
    """VQA v2 as distributed: v2_OpenEnded_mscoco_<subtype>_questions.json and
    v2_mscoco_<subtype>_annotations.json (none for test-dev2015), images in the COCO folders."""
    for subtype, count, offset, image_subtype in (("train2014", counts[0], 0, "train2014"),
                                                  ("val2014", counts[1], 100, "val2014"),
                                                  ("test-dev2015", counts[2], 200, "test2015")):
        questions, annotations = [], []
        for image_id, colour in _images(count, offset):
            photo(root / image_subtype / f"COCO_{image_subtype}_{image_id:012d}.jpg", colour, seed=image_id)
            for k, (question, answer, qtype, atype) in enumerate((
                    ("What color is the block?", colour, "what color is the", "other"),
                    ("Is the block red?", "yes" if colour == "red" else "no", "is the", "yes/no"))):
                question_id = image_id * 10 + k
                questions.append({"image_id": image_id, "question": question, "question_id": question_id})
                annotations.append({"question_type": qtype, "multiple_choice_answer": answer, "answers": [
                    {"answer": answer, "answer_confidence": "yes", "answer_id": i + 1} for i in range(10)],
                    "image_id": image_id, "answer_type": atype, "question_id": question_id})
        common = {"info": {"description": "This is v2.0 of the VQA dataset."}, "license": {},
                  "data_subtype": subtype}
        (root / f"v2_OpenEnded_mscoco_{subtype}_questions.json").write_text(json.dumps(
            dict(common, task_type="Open-Ended", data_type="mscoco", questions=questions)))
        if not subtype.startswith("test"):
            (root / f"v2_mscoco_{subtype}_annotations.json").write_text(json.dumps(
                dict(common, data_type="mscoco", annotations=annotations)))
    return root


def encoded(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
