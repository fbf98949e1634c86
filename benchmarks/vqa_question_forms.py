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

For a model with two or more word glimpses it then shows, on the yes/no relation questions, where
the glimpses land and whether the answer could be read from there: how often glimpse 0 and 1 put
their largest weight on object A and B; how often the generator's rule, applied to the two places
the glimpses landed, gives the label; and, for each axis, the best share of those questions one
of the head's offset-along-direction products gets right by its sign alone, pooled over the axis'
two relation words ("left of" and "right of"): near 1 when the direction turns round with the
relation word, near 0.5 when it does not.
"""

import argparse
import collections
import json
import pathlib
import tempfile
import types

import keras
import numpy as np

from learning_curves import model_spec
from vlm_keras import train_vqa
from vlm_keras.data.formats.vqa import load_vqa_split
from vlm_keras.data.scenes.questions import RELATIONS, _referents, relation
from vlm_keras.data.sources import resolve_vqa_dir, scenes_of
from vlm_keras.encoders.regions import region_grid_shape
from vlm_keras.metrics import vqa_accuracy
from vlm_keras.vqa import VQAModel
from vlm_keras.vqa.scene_graphs import referent_maps
from vlm_keras.vqa.models import answer_branch_output, has_layer
from vlm_keras.vqa.vqa_model import _per_question


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
    if has_layer(model.head.get_layer("answer_branch"), "offsets_along_asked"):
        where_glimpses_land(model, test, scenes)


def where_glimpses_land(model, test, scenes):
    """Where a head's word glimpses land on the yes/no relation questions, and what their offsets
    say (the module's docstring)."""
    keep = [i for i, (q, t) in enumerate(zip(test.questions, test.question_types))
            if form_of(q, t) == "spatial: is A <relation> B"]
    branch = model.head.get_layer("answer_branch")
    _, where, _, weights = branch.get_layer("word_glimpses").output              # (B, W, 2), (B, W, R)
    compared = branch.get_layer("offsets_along_asked").output                     # (B, K P)
    glimpses, regions = weights.shape[1], weights.shape[2]
    # One output, so that the head's batching over a split's images (`_per_question`) serves.
    flat = keras.ops.concatenate([keras.ops.reshape(where, (-1, 2 * glimpses)),
                                  keras.ops.reshape(weights, (-1, glimpses * regions)), compared], axis=-1)
    probe = keras.Model(model.head.inputs, answer_branch_output(model.head, flat))
    features, index = model._split_features(test, 0, scenes)
    questions = [test.questions[i] for i in keep]
    values = _per_question(probe, features, model.encode_questions(questions), index[keep])
    where = values[:, :2 * glimpses].reshape(-1, glimpses, 2)
    weights = values[:, 2 * glimpses:2 * glimpses + glimpses * regions].reshape(-1, glimpses, regions)
    compared = values[:, 2 * glimpses + glimpses * regions:]
    grid = None if model.reads_scene_graphs else region_grid_shape(model.head)
    targets = referent_maps([scenes[test.image_ids[i]] for i in keep], questions, glimpses, grid)
    labels = np.array([test.multiple_choice_answers[i] == "yes" for i in keep])
    asked = np.array([next(r for r in RELATIONS if f" {r} " in q) for q in questions])
    print(f"\nword glimpses on the {len(keep)} yes/no relation questions of test:")
    for k in range(min(2, glimpses)):
        hits = targets[np.arange(len(keep)), k, weights[:, k].argmax(-1)] > 0
        print(f"  glimpse {k}: largest weight on object {'AB'[k]} {hits.mean():.3f}")
    a, b = ([types.SimpleNamespace(y=row, x=column) for row, column in where[:, k]] for k in (0, 1))
    rule = np.array([(relation(*pair) == r) == y for *pair, r, y in zip(a, b, asked, labels)])
    print(f"  the generator's rule on the two landing places gives the label: {rule.mean():.3f}")
    for axis in (("above", "below"), ("to the left of", "to the right of")):
        on = np.isin(asked, axis)
        best = max(max(np.mean((c > 0) == labels[on]), np.mean((c < 0) == labels[on]))
                   for c in compared[on].T)
        print(f"  {' / '.join(axis)}: best sign of one offset product, pooled: {best:.3f} ({on.sum()} questions)")


if __name__ == "__main__":
    main()
