"""VQA accuracy per question form on the scenes' test split, spatial questions split in two, and a
check that every spatial label follows the generator's rule.

    python benchmarks/vqa_question_forms.py [--model graph[+word_glimpses=2]] [--visual-input scene_graph] [--epochs 6]
                                            [--num-images 12000] [--out DIR]

Spatial questions come in two forms: "what is <relation> <object>" (the answer is a shape) and
"is <object A> <relation> <object B>" (yes/no). Trains `train_vqa(model, visual_input)` on the
scenes (the dataset of `benchmarks/vqa.py`), or loads `--out` if it already holds a model, then
prints the official VQA accuracy of each form on the test split. Before any training it answers
every spatial test question from the scene annotations with the generator's own rule
(`questions.relation`, the referents resolved as the generator names them) and prints the share
that agrees with the labels: 1.0 means a model's misses are its own, not the data's.
"""

import argparse
import collections
import json
import pathlib
import tempfile

import numpy as np

from learning_curves import model_spec
from vlm_keras import train_vqa
from vlm_keras.data.formats.vqa import load_vqa_split
from vlm_keras.data.scenes.questions import RELATIONS, _referents, relation
from vlm_keras.data.sources import resolve_vqa_dir, scenes_of
from vlm_keras.metrics import vqa_accuracy
from vlm_keras.vqa import VQAModel


def form_of(question, question_type):
    if question_type != "spatial":
        return question_type
    return "spatial: what is <relation> X" if question.startswith("what is ") else "spatial: is A <relation> B"


def rule_answer(question, objects):
    """The answer the generator's rule gives a spatial question about `objects`, or None if its
    referents do not resolve to one object each."""
    def named(phrase, avoid):
        found = [o for o in objects if phrase in _referents(o, objects, avoid, True)]
        return found[0] if len(found) == 1 else None

    if question.startswith("what is "):
        rest = question[len("what is "):]
        between = next((r for r in RELATIONS if rest.startswith(r + " ")), None)
        b = named(rest[len(between) + 1:], "shape") if between else None
        candidates = [a for a in objects if b is not None and a is not b and relation(a, b) == between]
        return candidates[0].shape if len(candidates) == 1 else None
    rest = question[len("is "):]
    for asked in RELATIONS:
        if f" {asked} " in rest:
            a, b = (named(part, None) for part in rest.split(f" {asked} ", 1))
            if a is not None and b is not None:
                return "yes" if relation(a, b) == asked else "no"
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="graph", help="MODEL[+OPTION=VALUE...]: the trainer's model type and "
                        "head options, as learning_curves.py's --models")
    parser.add_argument("--visual-input", default="scene_graph", choices=("image", "scene_graph"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--num-images", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="model folder: trained into when empty, loaded when it holds a model")
    args = parser.parse_args()

    data_dir = resolve_vqa_dir("scenes", num_images=args.num_images, seed=args.seed)
    test = load_vqa_split(data_dir, "test")
    scenes = scenes_of(str(data_dir), "test", verbose=False)
    spatial = [(q, scenes[i].objects, a) for q, t, i, a in
               zip(test.questions, test.question_types, test.image_ids, test.multiple_choice_answers) if t == "spatial"]
    agree = sum(rule_answer(q, objects) == answer for q, objects, answer in spatial)
    print(f"the generator's rule reproduces {agree} of {len(spatial)} spatial test labels ({agree / len(spatial):.3f})")

    out = pathlib.Path(args.out or tempfile.mkdtemp(prefix="vqa_forms_"))
    if (out / "model.keras").is_file():
        model = VQAModel.load(out)
    else:
        name, options = model_spec(args.model)
        model = train_vqa(data=str(data_dir), model=name, visual_input=args.visual_input, epochs=args.epochs,
                          seed=args.seed, verbose=1, out=out, eval_splits=(), **options)
    # The model's answers as `evaluate` writes them (the VQA results format), then scored per form.
    answers_file = pathlib.Path(tempfile.mkdtemp(prefix="vqa_forms_answers_")) / "test_answers.json"
    model.evaluate(str(data_dir), "test", predictions=answers_file, verbose=0)
    predicted = {row["question_id"]: row["answer"] for row in json.loads(answers_file.read_text())}
    scores = collections.defaultdict(list)
    for question_id, question, question_type, answers in zip(test.question_ids, test.questions,
                                                             test.question_types, test.answers):
        scores[form_of(question, question_type)].append(vqa_accuracy(predicted[question_id], answers))
    config = model.config        # what the model was trained with (a loaded one: its own)
    print(f"\n{config['model_type']} ({config.get('visual_input', 'image')}), {config['epochs']} epochs, "
          f"{args.num_images} scenes, seed {config['seed']}; official VQA accuracy on test\n")
    print("| question form | questions | accuracy |")
    print("|---|---|---|")
    for form, values in sorted(scores.items()):
        print(f"| {form} | {len(values):,} | {np.mean(values):.3f} |")


if __name__ == "__main__":
    main()
