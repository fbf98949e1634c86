import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from vlm_keras.data.formats.reader import DatasetError
from vlm_keras.data.scenes.questions import mentions_heldout_pair
from vlm_keras.data.scenes.dataset import write_scenes_dataset
from vlm_keras.data.scenes.dataset import write_vqa_dataset, write_vqa_split
from vlm_keras.data.formats.vqa import (
    VQASplit,
    list_vqa_splits,
    load_vqa,
    load_vqa_split,
    write_vqa_results,
)

_SPLITS = ["train", "val", "test", "compositional"]


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory):
    """A 20-image scenes dataset (16/2/2 + 2 compositional), without VQA files."""
    return write_scenes_dataset(tmp_path_factory.mktemp("scenes") / "shapes", num_images=20,
                                seed=0, image_size=32, progress=False)


@pytest.fixture(scope="module")
def vqa_dir(scenes_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("vqa") / "shapes"
    shutil.copytree(scenes_dir, data_dir)
    assert write_vqa_dataset(data_dir) == data_dir
    return data_dir


def _read(path):
    return json.loads(path.read_text())


def _files(data_dir, split):
    return data_dir / "annotations" / f"questions_{split}.json", \
        data_dir / "annotations" / f"vqa_{split}.json"


# --- writing --------------------------------------------------------------------------------


def test_files_are_in_vqa_v2_format(vqa_dir):
    all_question_ids = []
    for split in _SPLITS:
        questions_file, annotations_file = _files(vqa_dir, split)
        questions, annotations = _read(questions_file), _read(annotations_file)
        assert list(questions) == ["info", "task_type", "data_type", "data_subtype", "license",
                                   "questions"]
        assert list(annotations) == ["info", "data_type", "data_subtype", "license",
                                     "annotations"]
        assert questions["task_type"] == "Open-Ended"
        assert questions["data_subtype"] == annotations["data_subtype"] == split
        assert questions["info"]["seed"] == 0 and questions["info"]["questions_per_image"] == 6
        scenes = _read(vqa_dir / "annotations" / f"scenes_{split}.json")["scenes"]
        image_ids = [entry["image_id"] for entry in scenes]
        assert len(questions["questions"]) == len(annotations["annotations"]) == 6 * len(scenes)
        for question, annotation in zip(questions["questions"], annotations["annotations"]):
            assert list(question) == ["image_id", "question", "question_id"]
            assert list(annotation) == ["question_id", "image_id", "question_type",
                                        "answer_type", "multiple_choice_answer", "answers"]
            assert question["question_id"] == annotation["question_id"]
            assert question["image_id"] == annotation["image_id"] in image_ids
            assert question["question_id"] // 100 == question["image_id"]
            answers = annotation["answers"]
            assert [a["answer_id"] for a in answers] == list(range(1, 11))
            assert all(list(a) == ["answer", "answer_confidence", "answer_id"] for a in answers)
            assert all(a["answer_confidence"] == "yes" for a in answers)
            texts = [a["answer"] for a in answers]
            assert texts.count(annotation["multiple_choice_answer"]) >= 7
            if split != "compositional":
                assert not mentions_heldout_pair(question["question"])
            all_question_ids.append(question["question_id"])
    assert len(all_question_ids) == len(set(all_question_ids))


def test_human_answers_vary_a_little(vqa_dir):
    annotations = _read(_files(vqa_dir, "train")[1])["annotations"]
    unanimous = [len({a["answer"] for a in ann["answers"]}) == 1 for ann in annotations]
    assert 0 < sum(unanimous) < len(unanimous)


def test_true_answer_scores_one(vqa_dir):
    metrics = pytest.importorskip("vlm_keras.metrics")
    if not hasattr(metrics, "vqa_accuracy"):
        pytest.skip("metrics.vqa_accuracy not available")
    split = load_vqa_split(vqa_dir, "train", check_images=False)
    for answer, answers in zip(split.multiple_choice_answers, split.answers):
        assert metrics.vqa_accuracy(answer, answers) == 1.0


def test_rewrite_is_byte_identical(vqa_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(vqa_dir, copy)
    for split in _SPLITS:
        for file in _files(copy, split):
            file.unlink()
    write_vqa_dataset(copy)
    for split in _SPLITS:
        for original, rewritten in zip(_files(vqa_dir, split), _files(copy, split)):
            assert original.read_bytes() == rewritten.read_bytes()
    # A different seed gives different questions.
    questions_file, _ = write_vqa_split(copy, "train", seed=1)
    assert questions_file.read_bytes() != _files(vqa_dir, "train")[0].read_bytes()


def test_existing_files_are_reused_or_refused(vqa_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(vqa_dir, copy)
    inodes = {f: f.stat().st_ino for split in _SPLITS for f in _files(copy, split)}
    write_vqa_dataset(copy)  # same settings: nothing rewritten
    assert {f: f.stat().st_ino for f in inodes} == inodes
    with pytest.raises(ValueError, match=r"questions_train\.json' was written with other "
                                         r"settings \(seed is 0 there, 1 requested\)"):
        write_vqa_dataset(copy, seed=1)
    with pytest.raises(ValueError, match="questions_per_image is 6 there, 3 requested"):
        write_vqa_dataset(copy, questions_per_image=3)
    # One file of a pair missing: the pair is written again.
    _files(copy, "val")[1].unlink()
    write_vqa_dataset(copy)
    assert _files(copy, "val")[1].read_bytes() == _files(vqa_dir, "val")[1].read_bytes()
    # Questions made from another scenes file are refused.
    scenes = copy / "annotations" / "scenes_test.json"
    content = _read(scenes)
    content["scenes"] = content["scenes"][:1]
    scenes.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"questions_test\.json.*scenes_sha256"):
        write_vqa_dataset(copy)


def test_writer_errors(scenes_dir, tmp_path):
    with pytest.raises(ValueError, match="split is 'dev'; expected one of"):
        write_vqa_split(scenes_dir, "dev")
    with pytest.raises(ValueError, match="questions_per_image is 100; expected at most 99"):
        write_vqa_split(scenes_dir, "val", questions_per_image=100)
    with pytest.raises(DatasetError, match="no annotations/scenes_<split>.json"):
        write_vqa_dataset(tmp_path)
    bad = tmp_path / "bad"
    (bad / "annotations").mkdir(parents=True)
    (bad / "annotations" / "scenes_val.json").write_text(
        json.dumps({"scenes": [{"image_id": 3, "scene": {"background": [1, 2, 3],
                                                         "objects": [{"color": "pink"}]}}]}))
    with pytest.raises(DatasetError, match=r"scenes_val\.json.*scene #0 \(image_id 3\) is not a "
                                           r"valid scene: scene object color is 'pink'"):
        write_vqa_split(bad, "val")


def test_write_vqa_results_round_trip(tmp_path):
    path = tmp_path / "out" / "results.json"
    write_vqa_results(path, np.array([100, 101]), ["yes", "2"])
    assert _read(path) == [{"question_id": 100, "answer": "yes"},
                           {"question_id": 101, "answer": "2"}]
    with pytest.raises(ValueError, match="2 question ids and 1 answers"):
        write_vqa_results(path, [1, 2], ["yes"])
    with pytest.raises(ValueError, match=r"answers\[1\] is 3; expected a str"):
        write_vqa_results(path, [1, 2], ["yes", 3])
    with pytest.raises(ValueError, match=r"question_ids\[1\] repeats 1 of question_ids\[0\]"):
        write_vqa_results(path, [1, 1], ["yes", "no"])
    with pytest.raises(ValueError, match=r"question_ids\[0\] is '1'; expected an int"):
        write_vqa_results(path, ["1"], ["yes"])
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


# --- loading our files ------------------------------------------------------------------------


def test_load_every_split(vqa_dir):
    assert list_vqa_splits(vqa_dir) == ["train", "val", "test", "compositional"]
    for name in _SPLITS:
        split = load_vqa_split(vqa_dir, name)
        questions, annotations = (_read(f) for f in _files(vqa_dir, name))
        assert isinstance(split, VQASplit) and split.name == name
        assert len(split) == len(questions["questions"])
        assert split.question_ids == [q["question_id"] for q in questions["questions"]]
        assert split.questions == [q["question"] for q in questions["questions"]]
        assert split.annotations == annotations["annotations"]
        assert split.answers == [[a["answer"] for a in ann["answers"]]
                                 for ann in annotations["annotations"]]
        assert split.multiple_choice_answers == [a["multiple_choice_answer"]
                                                 for a in annotations["annotations"]]
        assert split.question_types == [a["question_type"] for a in annotations["annotations"]]
        assert split.answer_types == [a["answer_type"] for a in annotations["annotations"]]
        captions = _read(vqa_dir / "annotations" / f"captions_{name}.json")
        file_names = {image["id"]: image["file_name"] for image in captions["images"]}
        for image_id, path in zip(split.image_ids, split.image_paths):
            assert path == str((vqa_dir / name / file_names[image_id]).resolve())
            assert os.path.isabs(path) and os.path.isfile(path)


def test_the_folder_may_be_a_string_as_for_captions(vqa_dir):
    split = load_vqa_split(str(vqa_dir), "test")
    assert split.image_paths == load_vqa_split(vqa_dir, "test").image_paths


def test_load_vqa_split_missing(vqa_dir, tmp_path):
    with pytest.raises(DatasetError, match=r"VQA split 'dev' not found.*questions_dev\.json.*"
                                           r"train, val, test, compositional"):
        load_vqa_split(vqa_dir, "dev")
    with pytest.raises(DatasetError, match="does not exist"):
        load_vqa_split(tmp_path / "elsewhere", "val")
    assert list_vqa_splits(tmp_path) == []


def test_missing_and_bad_images_in_our_dataset(vqa_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(vqa_dir, copy)
    image = sorted((copy / "val").iterdir())[0]
    image.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=rf"1 of 2 image files are bad.*{image.name}"):
        load_vqa_split(copy, "val")
    assert len(load_vqa_split(copy, "val", check_images=False)) == 12
    image.unlink()
    with pytest.raises(DatasetError, match=rf"1 of 2 images are missing.*{image.name}"):
        load_vqa_split(copy, "val", check_images=False)


# --- loading hand-made files ------------------------------------------------------------------


def _save_image(path, fmt="PNG"):
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, fmt)


def _questions():
    return {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val",
            "license": {}, "questions": [
                {"image_id": 1, "question": "what color is it", "question_id": 10},
                {"image_id": 2, "question": " is it round ", "question_id": 11},
                {"image_id": 1, "question": "how many", "question_id": 12}]}


def _annotations():
    def annotation(question_id, image_id, answer, answer_type):
        return {"question_id": question_id, "image_id": image_id, "question_type": "what",
                "answer_type": answer_type, "multiple_choice_answer": answer,
                "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": i}
                            for i in range(1, 11)]}
    # Not in question order: the loader follows the questions file.
    return {"info": {}, "data_type": "mscoco", "data_subtype": "val", "license": {},
            "annotations": [annotation(12, 1, "2", "number"), annotation(10, 1, "red", "other"),
                            annotation(11, 2, "yes", "yes/no")]}


@pytest.fixture
def handmade(tmp_path):
    """questions/vqa files in ann/, images 000000000001.png and 000000000002.png in img/."""
    _save_image(tmp_path / "img" / "000000000001.png")
    _save_image(tmp_path / "img" / "000000000002.png")
    (tmp_path / "ann").mkdir()
    files = tmp_path / "ann" / "questions_val.json", tmp_path / "ann" / "vqa_val.json"
    files[0].write_text(json.dumps(_questions()))
    files[1].write_text(json.dumps(_annotations()))
    return files[0], files[1], tmp_path / "img"


def test_load_handmade(handmade):
    questions_file, annotations_file, root = handmade
    split = load_vqa(questions_file, annotations_file, root)
    assert split.name == "val"
    assert split.question_ids == [10, 11, 12] and split.image_ids == [1, 2, 1]
    assert split.questions == ["what color is it", "is it round", "how many"]
    assert split.multiple_choice_answers == ["red", "yes", "2"]
    assert split.answer_types == ["other", "yes/no", "number"]
    assert split.image_paths[0] == str((root / "000000000001.png").resolve())
    assert load_vqa(questions_file, annotations_file, root, name="mine").name == "mine"


def test_coco_2014_naming(handmade):
    questions_file, annotations_file, root = handmade
    content = _questions()
    content["data_subtype"] = "val2014"
    questions_file.write_text(json.dumps(content))
    _save_image(root / "COCO_val2014_000000000001.jpg", "JPEG")
    split = load_vqa(questions_file, annotations_file, root)
    assert split.name == "val2014"
    assert split.image_paths[0] == str((root / "COCO_val2014_000000000001.jpg").resolve())
    assert split.image_paths[1] == str((root / "000000000002.png").resolve())


def test_captions_file_names_images_and_path_escape(handmade):
    questions_file, annotations_file, root = handmade
    captions = {"images": [{"id": 1, "file_name": "000000000002.png"},
                           {"id": 2, "file_name": "000000000001.png"}], "annotations": []}
    captions_file = questions_file.parent / "captions_val.json"
    captions_file.write_text(json.dumps(captions))
    split = load_vqa(questions_file, annotations_file, root)
    assert split.image_paths[0] == str((root / "000000000002.png").resolve())
    captions["images"][1]["file_name"] = "../ann/secret.png"
    captions_file.write_text(json.dumps(captions))
    with pytest.raises(DatasetError, match=r"captions_val\.json.*image #1 \(id 2\) file_name "
                                           r"'\.\./ann/secret\.png' escapes the image folder"):
        load_vqa(questions_file, annotations_file, root)
    captions["images"] = captions["images"][:1]
    captions_file.write_text(json.dumps(captions))
    with pytest.raises(DatasetError, match=r"question #1 \(question_id 11\) refers to image_id 2, "
                                           r"which is not in captions"):
        load_vqa(questions_file, annotations_file, root)


def test_missing_image_is_named(handmade):
    questions_file, annotations_file, root = handmade
    (root / "000000000002.png").unlink()
    with pytest.raises(DatasetError, match=r"questions_val\.json.*1 of 2 images are missing.*"
                                           r"image_id 2 \(none of COCO_val_000000000002\.jpg, "
                                           r"000000000002\.png, 000000000002\.jpg\)"):
        load_vqa(questions_file, annotations_file, root, check_images=False)


def _change_questions(change):
    content = _questions()
    change(content)
    return content


def _change_annotations(change):
    content = _annotations()
    change(content)
    return content


_BAD_QUESTIONS = [
    ('{"questions": [', r"questions_val\.json' is not valid JSON: .* at line 1 column 16"),
    ([], r"questions_val\.json': top level is a list; expected an object with \"questions\""),
    ({"questions": {}}, r'"questions" is a dict; expected a list'),
    ({"info": {}}, r'"questions" is missing; expected a list'),
    (_change_questions(lambda c: c["questions"][1].pop("question_id")),
     r'question #1 has no int "question_id"'),
    (_change_questions(lambda c: c["questions"][1].update(question_id="11")),
     r"question #1 \(question_id '11'\) has no int \"question_id\""),
    (_change_questions(lambda c: c["questions"][2].update(image_id=None)),
     r'question #2 \(question_id 12\) has no int "image_id"'),
    (_change_questions(lambda c: c["questions"][0].update(question=5)),
     r'question #0 \(question_id 10\) has no str "question"'),
    (_change_questions(lambda c: c["questions"][0].update(question="  ")),
     r"question #0 \(question_id 10\) question is empty"),
    (_change_questions(lambda c: c["questions"][0].update(question="??")),
     r"question #0 \(question_id 10\) question '\?\?' has no words \(punctuation only\)"),
    (_change_questions(lambda c: c["questions"][2].update(question_id=10)),
     r"question #2 \(question_id 10\) repeats question_id 10 of question #0"),
    (_change_questions(lambda c: c["questions"].append("what")),
     r"question #3 is a str; expected an object"),
    (_change_questions(lambda c: c["questions"].append(
        {"image_id": 2, "question": "why", "question_id": 13})),
     r"vqa_val\.json'.*no annotation for question #3 \(question_id 13\)"),
]

_BAD_ANNOTATIONS = [
    ("[1, 2", r"vqa_val\.json' is not valid JSON"),
    (_change_annotations(lambda c: c.pop("annotations")), r'"annotations" is missing'),
    (_change_annotations(lambda c: c["annotations"][1].update(question_id=99)),
     r"annotation #1 \(question_id 99\) refers to question_id 99, which is not in the "
     r"questions file"),
    (_change_annotations(lambda c: c["annotations"][2].update(question_id=12)),
     r"annotation #2 \(question_id 12\) repeats question_id 12 of annotation #0"),
    (_change_annotations(lambda c: c["annotations"][0].update(image_id=2)),
     r"annotation #0 \(question_id 12\) has image_id 2; its question has image_id 1"),
    (_change_annotations(lambda c: c["annotations"][0]["answers"].__setitem__(2, "two")),
     r"annotation #0 \(question_id 12\) answer #2 is 'two'; expected an object with a str "
     r"\"answer\""),
    (_change_annotations(lambda c: c["annotations"][1]["answers"][0].update(answer=2)),
     r"annotation #1 \(question_id 10\) answer #0 is"),
    (_change_annotations(lambda c: c["annotations"][1].update(answers=[])),
     r'annotation #1 \(question_id 10\) "answers" is a list; expected a non-empty list'),
    (_change_annotations(lambda c: c["annotations"][1].update(answers="red")),
     r'annotation #1 \(question_id 10\) "answers" is a str'),
    (_change_annotations(lambda c: c["annotations"][1].pop("multiple_choice_answer")),
     r'annotation #1 \(question_id 10\) has no str "multiple_choice_answer"'),
    (_change_annotations(lambda c: c["annotations"][1].update(answer_type=None)),
     r'annotation #1 \(question_id 10\) has no str "answer_type"'),
]


@pytest.mark.parametrize("content, message", _BAD_QUESTIONS)
def test_bad_questions_file(handmade, content, message):
    questions_file, annotations_file, root = handmade
    questions_file.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DatasetError, match=message):
        load_vqa(questions_file, annotations_file, root)


@pytest.mark.parametrize("content, message", _BAD_ANNOTATIONS)
def test_bad_annotations_file(handmade, content, message):
    questions_file, annotations_file, root = handmade
    annotations_file.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DatasetError, match=message):
        load_vqa(questions_file, annotations_file, root)


def test_missing_files_and_folders(handmade, tmp_path):
    questions_file, annotations_file, root = handmade
    with pytest.raises(DatasetError, match=r"annotations '.*nope\.json' does not exist"):
        load_vqa(questions_file, tmp_path / "nope.json", root)
    with pytest.raises(DatasetError, match=r"questions '.*ann' is not a file"):
        load_vqa(questions_file.parent, annotations_file, root)
    with pytest.raises(DatasetError, match=r"image folder '.*nowhere' does not exist"):
        load_vqa(questions_file, annotations_file, tmp_path / "nowhere")
