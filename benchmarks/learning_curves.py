"""Learning curves and compositional gaps: each task's score against the number of training images,
over seeds, on the same test and compositional images.

    python benchmarks/learning_curves.py [--tasks vqa,captioning,retrieval] [--sizes vqa=1500,3000,6000,12000]
        [--seeds 0,1,2] [--models vqa=attention,attention+region_appearance=32] [--epochs vqa=12]
        [--out benchmarks/results/learning_curves.jsonl]

For each task, model, size and seed: a scenes dataset of that size (data seed 0: the training
images of a smaller set are the first images of a larger one, `write_scenes_dataset`), a model
trained on it with that seed (initialisation, dropout, order), and scored on the test and
compositional splits of the task's *largest* set, so every point is scored on the same images and
none of them was seen in training. The compositional split holds a colour-shape pair that no
training image has (`HELDOUT_PAIRS`).

A model is the trainer's model type with options after "+": `attention+region_appearance=32`
is `train_vqa(model="attention", region_appearance=32)`; `attention+outline=false` is the
attention head as it was before it read the outline maps (`outline`, its default now);
`graph+outline=true` the graph head reading them (`train_vqa()`'s default model now);
`lstm+outline=true+outline_stream=true+region_appearance=32` is the LSTM captioner whose region
convolutions read the outline maps and whose appearance stream reads the pixels (its default now,
named in full so that the runs before the default changed keep their name), `lstm+outline=false`
the document's captioner as it was ("default": the trainer's default model type, for retrieval;
`default+outline=true+outline_stream=true+region_appearance=32+hard_negatives=true` is `train_retrieval()`'s
default now, the outline stream with hard negative captions). The defaults are the README's benchmark settings
(VQA: 12,000 scenes, 12 epochs; captioning and retrieval: 6,000 scenes, their demo's epochs), and
four sizes from an eighth of them.

Scores: VQA accuracy (official), captioning CIDEr-D and BLEU-4 (COCO), retrieval R@1 (both
directions, their mean is the score; and again counting every image a caption is true of as right,
`RetrievalModel.evaluate(true_matches=True)`, in the runs recorded since it was). Every run appends
one JSON line to --out, and a run already there (same task, model, size, seed, epochs) is not
trained again: an interrupted benchmark resumes. The summary prints, per task, model and size, the mean and standard deviation over the
seeds of the test score, the compositional score and their gap, and the share of the largest
size's test score; for VQA, "what color" and "what shape" questions about held-out pairs.
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

DEFAULT_SIZES = {"vqa": (1500, 3000, 6000, 12000), "captioning": (750, 1500, 3000, 6000),
                 "retrieval": (750, 1500, 3000, 6000)}
DEFAULT_EPOCHS = {"vqa": 12, "captioning": 6, "retrieval": 10}
# Each task's model before and after issue 20, named by their options so that the lines keep their
# meaning whatever the defaults become: the VQA attention head as it was, then with the outline stream,
# then the graph head with it (`train_vqa()`'s default now), and the captioner and the retrieval model
# with the same outline stream; the retrieval model also with hard negative captions (its default now;
# the runs recorded before the option existed are labelled `hard_negatives=false`, which is what they ran).
OUTLINE_STREAM = "outline=true+outline_stream=true+region_appearance=32"
DEFAULT_MODELS = {"vqa": ("attention+outline=false", "attention+region_appearance=32+outline=true",
                          "graph+outline=true"),
                  "captioning": ("lstm+outline=false", f"lstm+{OUTLINE_STREAM}"),
                  "retrieval": ("default+outline=false+hard_negatives=false", f"default+{OUTLINE_STREAM}+hard_negatives=false",
                                f"default+{OUTLINE_STREAM}+hard_negatives=true")}


def per_task(text, parse, defaults):
    """'vqa=a,b;captioning=c' -> {task: parse(['a', 'b'])}, the defaults elsewhere."""
    values = dict(defaults)
    for part in filter(None, (text or "").split(";")):
        task, _, items = part.partition("=")
        if task not in defaults:
            sys.exit(f"unknown task {task!r} in {text!r}; expected {', '.join(defaults)}")
        values[task] = parse([item for item in items.split(",") if item])
    return values


def model_spec(spec):
    """'attention+region_appearance=32+glimpses=2' -> ('attention', {'region_appearance': 32, ...}); a value
    that is not JSON is a string."""
    name, *options = spec.split("+")
    parsed = {}
    for option in options:
        key, _, value = option.partition("=")
        try:
            parsed[key] = json.loads(value) if value else True
        except json.JSONDecodeError:     # a word: grounded_words=scenes
            parsed[key] = value
    return name, parsed


def dataset(task, size, root):
    from vlm_keras.data.scenes.dataset import write_scenes_dataset, write_vqa_dataset

    folder = pathlib.Path(root) / f"scenes-n{size}-seed0"
    write_scenes_dataset(folder, num_images=size, seed=0, progress=False)
    if task == "vqa":
        write_vqa_dataset(folder, seed=0)
    return folder


def train_and_score(task, spec, size, seed, epochs, root):
    name, options = model_spec(spec)
    folder, largest = dataset(task, size, root), dataset(task, max(ARGS.sizes[task]), root)
    with tempfile.TemporaryDirectory(prefix=f"curve_{task}_") as checkpoints:
        common = dict(data=str(folder), epochs=epochs, image_size=64, seed=seed, verbose=0, eval_splits=(),
                      checkpoint_dir=checkpoints, **options)
        return _train_and_score(task, name, spec, size, seed, epochs, folder, largest, common)


def _train_and_score(task, name, spec, size, seed, epochs, folder, largest, common):
    import vlm_keras

    started = time.perf_counter()
    row = {"task": task, "model": spec, "size": size, "seed": seed, "epochs": epochs}
    if task == "vqa":
        result = vlm_keras.train_vqa(model=name, **common)
        with tempfile.TemporaryDirectory() as scratch:
            answers = os.path.join(scratch, "answers.json")
            for split in ("test", "compositional"):
                report = result.evaluate(str(largest), split, verbose=0,
                                         predictions=answers if split == "compositional" else None)
                row[f"score_{split}"] = report["overall"]
                row[f"per_question_type_{split}"] = report["per_question_type"]
            row.update(heldout_attribute_questions(answers, largest))
    elif task == "captioning":
        result = vlm_keras.train_captioner(model=name, **common)
        for split in ("test", "compositional"):
            report = result.evaluate(str(largest), split, verbose=0, metrics=("bleu", "cider"))
            row[f"score_{split}"], row[f"bleu4_{split}"] = report["coco_cider_d"], report["coco_bleu4"]
    else:
        if name != "default":
            common["model"] = name
        result = vlm_keras.train_retrieval(**common)
        for split in ("test", "compositional"):
            report = result.evaluate(str(largest), split, verbose=0, true_matches=True)
            for prefix, figures in (("", report), ("true_", report["true_matches"])):
                row.update({f"{prefix}{key}_{split}": figures[key] for key in ("text_to_image_r1", "image_to_text_r1")})
                row[f"{prefix}score_{split}"] = (figures["text_to_image_r1"] + figures["image_to_text_r1"]) / 2
    row["seconds"] = time.perf_counter() - started   # training and scoring
    row["train_images"] = train_images(folder)
    return row


def train_images(folder):
    from vlm_keras.data.formats import coco

    return len(coco.load_caption_split(folder, "train", check_images=False))


def heldout_attribute_questions(answers_file, largest):
    """VQA accuracy on the compositional split's "what color" and "what shape" questions about an
    object of a held-out colour-shape pair: the shape named in the question with the colour
    answered, or the colour named with the shape answered (`answers_file`: the answers written
    by `VQAModel.evaluate(predictions=...)`)."""
    from vlm_keras.data.formats.vqa import load_vqa_split
    from vlm_keras.data.scenes.scenes import HELDOUT_PAIRS
    from vlm_keras.metrics import vqa_accuracy

    split = load_vqa_split(largest, "compositional", check_images=False)
    with open(answers_file, encoding="utf-8") as file:
        predicted = {item["question_id"]: item["answer"] for item in json.load(file)}
    scores = {"what color": [], "what shape": []}
    for question_id, question, answer, kind, human in zip(split.question_ids, split.questions,
                                                           split.multiple_choice_answers,
                                                           split.question_types, split.answers):
        words = set(question.split())
        if kind == "what color":
            heldout = any((answer, word) in HELDOUT_PAIRS for word in words)
        elif kind == "what shape":
            heldout = any((word, answer) in HELDOUT_PAIRS for word in words)
        else:
            continue
        if heldout:
            scores[kind].append(vqa_accuracy(predicted[question_id], human))
    figures = {}
    for kind, values in scores.items():
        key = "heldout_" + kind.replace(" ", "_")
        figures[key] = float(np.mean(values)) if values else None
        figures[key + "_count"] = len(values)
    return figures


# Each task's other figures, per direction or metric, printed under the main table.
SECONDARY = {"captioning": (("bleu4", "BLEU-4"),),
             "retrieval": (("text_to_image_r1", "text -> image R@1"), ("image_to_text_r1", "image -> text R@1"),
                           # every image a caption is true of counts as right (`evaluate(true_matches=True)`)
                           ("true_score", "R@1 (true pairs right)"),
                           ("true_text_to_image_r1", "text -> image R@1 (true pairs right)"),
                           ("true_image_to_text_r1", "image -> text R@1 (true pairs right)"))}


def mean_sd(values):
    values = [v for v in values if v is not None]
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "n/a"


def grouped(rows):
    """(task, model, epochs, [(size, runs of that size), ...]) for every task, model and epochs."""
    for key in sorted({(r["task"], r["model"], r["epochs"]) for r in rows}):
        group = [r for r in rows if (r["task"], r["model"], r["epochs"]) == key]
        yield (*key, [(size, [r for r in group if r["size"] == size]) for size in sorted({r["size"] for r in group})])


def split_figures(runs, name):
    """'test | compositional | gap' of runs[i][name_test] and [name_compositional]."""
    test, comp = ([r.get(f"{name}_{split}") for r in runs] for split in ("test", "compositional"))
    gaps = [t - c for t, c in zip(test, comp) if t is not None and c is not None]
    return f"{mean_sd(test)} | {mean_sd(comp)} | {mean_sd(gaps)}"


def summary(rows):
    print("\nmean ± standard deviation over seeds; the share is of the largest size's mean test score\n")
    print("| task | model | training images | seeds | test | compositional | gap | share of full "
          "| held-out what color | held-out what shape |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    groups = list(grouped(rows))
    for task, model, _, sizes in groups:
        full = np.mean([r["score_test"] for r in sizes[-1][1]])
        for _, runs in sizes:
            print(f"| {task} | {model} | {runs[0]['train_images']:,} | {len(runs)} | {split_figures(runs, 'score')} "
                  f"| {np.mean([r['score_test'] for r in runs]) / full:.2f} "
                  f"| {mean_sd([r.get('heldout_what_color') for r in runs])} "
                  f"| {mean_sd([r.get('heldout_what_shape') for r in runs])} |")
    secondary = [(task, name, label, model, sizes) for task, model, _, sizes in groups
                 for name, label in SECONDARY.get(task, ())]
    if secondary:
        print("\nthe same runs' other figures; seconds of training and scoring, fewest to most\n")
        print("| figure | model | training images | seeds | test | compositional | gap | seconds |")
        print("|---|---|---|---|---|---|---|---|")
        for task, name, label, model, sizes in secondary:
            for _, runs in sizes:
                runs = [r for r in runs if f"{name}_test" in r]       # runs recorded before a figure existed lack it
                if not runs:
                    continue
                seconds = [r["seconds"] for r in runs if "seconds" in r]
                print(f"| {task} {label} | {model} | {runs[0]['train_images']:,} | {len(runs)} "
                      f"| {split_figures(runs, name)} "
                      f"| {f'{min(seconds):.0f}-{max(seconds):.0f}' if seconds else 'n/a'} |")


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="vqa,captioning,retrieval")
    parser.add_argument("--sizes", default="", help="TASK=N,N,...;TASK=... (scenes images per dataset)")
    parser.add_argument("--epochs", default="", help="TASK=N;TASK=N")
    parser.add_argument("--models", default="", help="TASK=MODEL[+option=value...],...;TASK=...")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data-root", default=os.path.join(tempfile.gettempdir(), "vlm_keras_curves"))
    parser.add_argument("--out", default="benchmarks/results/learning_curves.jsonl")
    parser.add_argument("--summary-only", action="store_true", help="print the table of --out; train nothing")
    ARGS = parser.parse_args()
    ARGS.sizes = per_task(ARGS.sizes, lambda items: tuple(sorted(int(i) for i in items)), DEFAULT_SIZES)
    ARGS.epochs = per_task(ARGS.epochs, lambda items: int(items[0]), DEFAULT_EPOCHS)
    ARGS.models = per_task(ARGS.models, tuple, DEFAULT_MODELS)
    seeds = [int(s) for s in ARGS.seeds.split(",")]
    out = pathlib.Path(ARGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    tasks = [t for t in ARGS.tasks.split(",") if t]
    if not ARGS.summary_only:
        for task in tasks:
            for spec in ARGS.models[task]:
                for size in ARGS.sizes[task]:
                    for seed in seeds:
                        run = {"task": task, "model": spec, "size": size, "seed": seed, "epochs": ARGS.epochs[task]}
                        if any(all(r.get(k) == v for k, v in run.items()) for r in rows):
                            continue
                        row = train_and_score(task, spec, size, seed, ARGS.epochs[task], ARGS.data_root)
                        rows.append(row)
                        with out.open("a", encoding="utf-8") as file:
                            file.write(json.dumps(row) + "\n")
                        print(json.dumps(row), flush=True)
    summary([r for r in rows if r["task"] in tasks])
    if "retrieval" in tasks:
        retrieval_ceiling(dataset("retrieval", max(ARGS.sizes["retrieval"]), ARGS.data_root))


def retrieval_ceiling(largest):
    """Prints the R@1 an oracle scores on the retrieval pools: it knows which images each caption is
    true of; text -> image it picks one of them at random, image -> text one of the image's true
    captions that are true of the fewest images (`benchmarks/retrieval.py`). The compositional
    pool's captions are vaguer, so part of any model's gap is the pools' and not the model's."""
    from retrieval import caption_specificity

    oracle = {}
    for split in ("test", "compositional"):
        report = caption_specificity(largest, split)
        t2i, i2t = report["oracle_text_to_image_r1"], report["oracle_image_to_text_r1"]
        oracle[split] = (t2i, i2t, (t2i + i2t) / 2)
    gap = oracle["test"][2] - oracle["compositional"][2]
    print("\nretrieval pools: an oracle's R@1 (text -> image / image -> text / their mean, the score) is "
          + " and ".join(f"{'/'.join(f'{v:.3f}' for v in oracle[split])} {name}"
                         for split, name in (("test", "on test"), ("compositional", "compositional")))
          + f" (the score's gap: {gap:.3f})")


if __name__ == "__main__":
    main()
