"""VQA v2 format: a validated loader and the results file.

`vlm_keras.data.scenes.dataset.write_vqa_dataset` adds two files per split to a scenes dataset, in
the layout of the VQA v2 release:

    annotations/questions_<split>.json  {"info", "task_type": "Open-Ended", "data_type",
                                         "data_subtype": split, "license",
                                         "questions": [{"image_id", "question", "question_id"}]}
    annotations/vqa_<split>.json        {"info", "data_type", "data_subtype", "license",
                                         "annotations": [{"question_id", "image_id",
                                         "question_type", "answer_type", "multiple_choice_answer",
                                         "answers": [{"answer", "answer_confidence",
                                                      "answer_id"} x 10]}]}

Question ids are `image_id * 100 + k` for the image's k-th question, so they are unique across
splits (image ids are). The 10 "human" answers come from synthetic annotators who mostly agree,
so that the leave-one-out in VQA accuracy has something to do (`scenes.questions.human_answers`): at
least 7 of the 10 are the true answer, which is also the `multiple_choice_answer`.

`load_vqa` reads VQA v2 files from any folder, including the real release, and reports problems
as `DatasetError`s that name the file and the offending entry.
"""

import dataclasses
import pathlib

import numpy as np

from vlm_keras.data.formats.reader import (DatasetError, check_image_files, check_split_files, has_words, is_int,
                                           json_kind, listing, order_splits, parse_images, read_json_object,
                                           require_list, unique_entries)
from vlm_keras.io import write_json

HUMAN_ANSWERS = 10


@dataclasses.dataclass
class VQASplit:
    """One split of a VQA dataset: questions, their images and human answers.

    Args:
        name: split name, e.g. "val".
        question_ids: question ids, in the order of the questions file.
        image_ids: the image id of each question.
        image_paths: absolute image path of each question.
        questions: question texts, stripped of surrounding whitespace.
        answers: the human answers of each question (10 in VQA v2), as written in the file.
        multiple_choice_answers: the most common human answer of each question.
        question_types: e.g. "what color" (ours) or "what color is the" (VQA v2).
        answer_types: "yes/no", "number" or "other".
        annotations: the annotation dicts as read, one per question, for the evaluator; None for
            questions without answers (then `answers` are empty and the other fields None).
        files: the files it was read from (an output must never overwrite them).
    """

    name: str
    question_ids: list
    image_ids: list
    image_paths: list
    questions: list
    answers: list
    multiple_choice_answers: list
    question_types: list
    answer_types: list
    annotations: list
    files: list = dataclasses.field(default_factory=list)

    def __len__(self):
        return len(self.question_ids)

    @property
    def has_answers(self):
        return self.annotations is not None


def vqa_files(data_dir, split):
    annotations = pathlib.Path(data_dir) / "annotations"
    return annotations / f"questions_{split}.json", annotations / f"vqa_{split}.json"


def write_vqa_split_files(data_dir, split, entries, info, data_type):
    """Writes `questions_<split>.json` and `vqa_<split>.json` in the VQA v2 layout, atomically.

    Args:
        data_dir: dataset folder; the files go to its `annotations/`.
        split: split name, stored as "data_subtype".
        entries: one dict per question, in file order, with "question_id", "image_id",
            "question", "question_type", "answer_type", "multiple_choice_answer" and "answers"
            (the human answer strings).
        info: dict stored under "info" in both files.
        data_type: stored as "data_type", e.g. "vlm_scenes" or "mscoco".

    Returns:
        `(questions_file, annotations_file)` as `pathlib.Path`s.
    """
    questions = [{"image_id": e["image_id"], "question": e["question"], "question_id": e["question_id"]}
                 for e in entries]
    annotations = [{
        "question_id": e["question_id"], "image_id": e["image_id"],
        "question_type": e["question_type"], "answer_type": e["answer_type"],
        "multiple_choice_answer": e["multiple_choice_answer"],
        "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                    for i, a in enumerate(e["answers"])],
    } for e in entries]
    common = {"data_type": data_type, "data_subtype": split, "license": {}}
    questions_file, annotations_file = vqa_files(data_dir, split)
    write_json(questions_file, {"info": info, "task_type": "Open-Ended", **common,
                                        "questions": questions})
    write_json(annotations_file, {"info": info, **common, "annotations": annotations})
    return questions_file, annotations_file


def load_vqa_split(data_dir, split, check_images=True):
    """Loads `data_dir/annotations/{questions,vqa}_<split>.json`, images under `data_dir/<split>/`.

    Args:
        data_dir: dataset folder (see `write_vqa_dataset`).
        split: split name, e.g. "train".
        check_images: see `load_vqa`.

    Returns:
        A `VQASplit`.

    Raises:
        DatasetError: if the split does not exist (the message lists those that do) or fails
            validation.
    """
    data_dir = pathlib.Path(data_dir)
    questions_file, annotations_file = vqa_files(data_dir, split)
    check_split_files(data_dir, split, [questions_file, annotations_file], lambda: list_vqa_splits(data_dir), "VQA ")
    return load_vqa(questions_file, annotations_file, data_dir / split, split, check_images)


def list_vqa_splits(data_dir):
    """Split names with both `questions_<split>.json` and `vqa_<split>.json` in `annotations/`.

    Returns:
        "train", "val", "test" first when present, then the others in alphabetical order.
    """
    annotations = pathlib.Path(data_dir) / "annotations"
    if not annotations.is_dir():
        return []
    names = [file.name[len("questions_"):-len(".json")] for file in annotations.glob("questions_*.json")]
    return order_splits(n for n in names if (annotations / f"vqa_{n}.json").is_file())


def load_vqa(questions_file, annotations_file, image_root, name=None, check_images=True, image_subtype=None):
    """Loads and validates a VQA v2 questions file and its annotations file (if it has one).

    Image files are found by the first rule that applies:

    1. If the questions file's folder holds `captions_<subtype>.json` (COCO captions, as our
       scenes datasets and COCO's annotation folder have), its "images" give each image id's
       "file_name" under `image_root`. `<subtype>` is the questions file's "data_subtype".
    2. Else `COCO_<subtype>_<image_id:012d>.jpg` in `image_root`, the VQA/COCO 2014 naming,
       if that file exists (`image_subtype` overrides the subtype: test-dev2015's questions are
       about test2015's images).
    3. Else `<image_id:012d>.png`, else `<image_id:012d>.jpg` (COCO 2017 naming).

    Args:
        questions_file: path to the questions JSON.
        annotations_file: path to the annotations JSON, or None for questions without answers
            (VQA v2's test and test-dev splits): the split can then be answered, not scored.
        image_root: folder that holds the images.
        name: split name; defaults to the questions file's "data_subtype", else its file name
            without "questions_" and ".json".
        check_images: if True, every image file must decode (see `images.check_image_file`),
            which is slow; if False, images are only checked to exist. The odd undecodable image
            of a large split is left out with its questions, with a warning
            (`reader.check_image_files`).
        image_subtype: the subtype in the images' file names (default: the questions').

    Returns:
        A `VQASplit` in the order of the questions file.

    Raises:
        DatasetError: naming the file and the offending entry (index and id), for malformed
            content, a question without annotation or the reverse, an image path outside
            `image_root`, or missing (or, with `check_images`, bad) images.
    """
    questions_file = pathlib.Path(questions_file)
    q_where = f"questions '{questions_file}'"
    q_content = read_json_object(questions_file, q_where, ("questions",))
    root = pathlib.Path(image_root)
    if not root.is_dir():
        raise DatasetError(f"{q_where}: image folder '{image_root}' does not exist")

    questions = _parse_questions(require_list(q_content, "questions", q_where), q_where)
    annotations = None
    if annotations_file is not None:
        annotations_file = pathlib.Path(annotations_file)
        a_where = f"annotations '{annotations_file}'"
        a_content = read_json_object(annotations_file, a_where, ("annotations",))
        annotations = _parse_vqa_annotations(require_list(a_content, "annotations", a_where), questions, a_where)
    for index, question_id in enumerate(questions if annotations is not None else ()):
        if question_id not in annotations:
            unanswered = sum(qid not in annotations for qid in questions)
            raise DatasetError(
                f"{a_where}: has no annotation for question #{index} (question_id {question_id}) "
                f"of {q_where}; {unanswered} of {len(questions)} questions have none"
            )
    subtype = q_content.get("data_subtype")
    if not isinstance(subtype, str) or not subtype:
        subtype = questions_file.stem.removeprefix("questions_")
    paths = _image_paths(questions, questions_file.parent, root, image_subtype or subtype, q_where)
    bad = check_image_files(sorted(set(paths.values())), root, q_where) if check_images else set()

    ids = [qid for qid in questions if paths[questions[qid][0]] not in bad]
    kept = [annotations[qid] for qid in ids] if annotations is not None else [{} for _ in ids]
    return VQASplit(
        name=name or subtype,
        question_ids=ids,
        image_ids=[questions[qid][0] for qid in ids],
        image_paths=[paths[questions[qid][0]] for qid in ids],
        questions=[questions[qid][1] for qid in ids],
        answers=[[a["answer"] for a in annotation.get("answers", [])] for annotation in kept],
        multiple_choice_answers=[annotation.get("multiple_choice_answer") for annotation in kept],
        question_types=[annotation.get("question_type") for annotation in kept],
        answer_types=[annotation.get("answer_type") for annotation in kept],
        annotations=kept if annotations is not None else None,
        files=[str(f) for f in (questions_file, annotations_file) if f is not None],
    )


def write_vqa_results(path, question_ids, answers):
    """Writes predicted answers in the VQA results format, atomically.

    The file is a list `[{"question_id": int, "answer": str}, ...]`, as read by the VQA
    evaluation tools.

    Args:
        path: the JSON file to write; its folder is created if needed.
        question_ids: question ids (ints, numpy ints accepted), each at most once.
        answers: one predicted answer string per question id.

    Raises:
        ValueError: if the lengths differ, an entry has the wrong type or an id repeats.
    """
    question_ids, answers = list(question_ids), list(answers)
    if len(question_ids) != len(answers):
        raise ValueError(f"got {len(question_ids)} question ids and {len(answers)} answers; "
                         "expected one answer per question id")
    results, seen = [], {}
    for index, (question_id, answer) in enumerate(zip(question_ids, answers)):
        if not isinstance(answer, str):
            raise ValueError(f"answers[{index}] is {answer!r}; expected a str")
        if isinstance(question_id, (bool, np.bool_)) or not isinstance(question_id,
                                                                       (int, np.integer)):
            raise ValueError(f"question_ids[{index}] is {question_id!r}; expected an int")
        question_id = int(question_id)
        if question_id in seen:
            raise ValueError(f"question_ids[{index}] repeats {question_id} of "
                             f"question_ids[{seen[question_id]}]; expected each id once")
        seen[question_id] = index
        results.append({"question_id": question_id, "answer": answer})
    write_json(path, results)


def _parse_questions(entries, where):
    """Returns {question_id: (image_id, question)} in file order."""
    questions = {}
    for entry, name, question_id in unique_entries(entries, "question", "question_id", where):
        if not is_int(entry.get("image_id")):
            raise DatasetError(f'{where}: {name} has no int "image_id"')
        text = entry.get("question")
        if not isinstance(text, str):
            raise DatasetError(f'{where}: {name} has no str "question"')
        if not text.strip():
            raise DatasetError(f"{where}: {name} question is empty")
        if not has_words(text):
            raise DatasetError(f"{where}: {name} question {text!r} has no words (punctuation only)")
        questions[question_id] = (entry["image_id"], text.strip())
    if not questions:
        raise DatasetError(f'{where}: "questions" is empty')
    return questions


def _parse_vqa_annotations(entries, questions, where):
    """Returns {question_id: annotation dict}, checking each against its question."""
    annotations = {}
    for entry, name, question_id in unique_entries(entries, "annotation", "question_id", where):
        if question_id not in questions:
            raise DatasetError(f"{where}: {name} refers to question_id {question_id}, which is "
                               "not in the questions file")
        if entry.get("image_id") != questions[question_id][0]:
            raise DatasetError(f"{where}: {name} has image_id {entry.get('image_id')!r}; its "
                               f"question has image_id {questions[question_id][0]}")
        for key in ("question_type", "answer_type", "multiple_choice_answer"):
            if not isinstance(entry.get(key), str):
                raise DatasetError(f'{where}: {name} has no str "{key}"')
        answers = entry.get("answers")
        if not isinstance(answers, list) or not answers:
            raise DatasetError(f'{where}: {name} "answers" is {json_kind(answers)}; expected a '
                               'non-empty list of {"answer": str} objects')
        for position, answer in enumerate(answers):
            if not isinstance(answer, dict) or not isinstance(answer.get("answer"), str):
                raise DatasetError(f'{where}: {name} answer #{position} is {answer!r}; expected '
                                   'an object with a str "answer"')
        annotations[question_id] = entry
    return annotations


def _image_paths(questions, annotations_dir, root, subtype, where):
    """Returns {image_id: absolute path} by the rules in `load_vqa`; raises if any is missing."""
    image_ids = list(dict.fromkeys(image_id for image_id, _ in questions.values()))
    captions_file = annotations_dir / f"captions_{subtype}.json"
    paths, missing = {}, []
    if captions_file.is_file():
        c_where = f"captions '{captions_file}'"
        content = read_json_object(captions_file, c_where, ("images",))
        by_id = parse_images(require_list(content, "images", c_where), root, c_where)
        for index, (question_id, (image_id, _)) in enumerate(questions.items()):
            if image_id not in by_id:
                raise DatasetError(f"{where}: question #{index} (question_id {question_id}) "
                                   f"refers to image_id {image_id}, which is not in {c_where}")
        for image_id in image_ids:
            paths[image_id] = str(by_id[image_id])
            if not by_id[image_id].is_file():
                missing.append(by_id[image_id].relative_to(root.resolve()).as_posix())
    else:
        resolved = root.resolve()
        for image_id in image_ids:
            names = [f"COCO_{subtype}_{image_id:012d}.jpg", f"{image_id:012d}.png",
                     f"{image_id:012d}.jpg"]
            found = [resolved / n for n in names if (resolved / n).is_file()]
            if found:
                paths[image_id] = str(found[0])
            else:
                missing.append(f"image_id {image_id} (none of {', '.join(names)})")
    if missing:
        raise DatasetError(f"{where}: {len(missing)} of {len(image_ids)} images are missing from "
                           f"'{root}': {listing(missing)}")
    return paths
