"""`vlm-keras demo`: the scenes dataset -> train -> evaluate -> export -> reload the export -> use it.

One demo per task (`--task captioning|vqa|retrieval`); each writes its data and models under
`--workdir`, reports its stages and their seconds on stderr and returns one JSON-able summary
(with "stage_seconds").
"""

import contextlib
import os
import pathlib
import time

from vlm_keras.config import RunConfig
from vlm_keras.io import log
from vlm_keras.precision import cpu_supports_bfloat16

# The demo's own settings where they differ from the trainers' defaults.
DEMO_EPOCHS = {"captioning": 5, "vqa": 10, "retrieval": 10}
# The captioning demo's scores: METEOR starts a Java VM for each split (about 6 s each on 2 cores);
# `vlm-keras evaluate` computes it with the others.
DEMO_CAPTION_METRICS = "bleu,cider,rouge"


def add_demo_arguments(parser):
    parser.add_argument("--task", default="captioning", choices=sorted(DEMO_EPOCHS))
    parser.add_argument("--workdir", default=".", help="where data/ and saved_models/ go (default: .)")
    parser.add_argument("--num-images", type=int, default=RunConfig.num_images)
    parser.add_argument("--epochs", type=int, help="default: " + ", ".join(
        f"{epochs} ({task})" for task, epochs in DEMO_EPOCHS.items()))
    parser.add_argument("--image-size", type=int, default=RunConfig.image_size)
    parser.add_argument("--seed", type=int, default=0)


class _Stages:
    """Logs "[k/n] what" as each stage begins and its seconds as it ends."""

    def __init__(self, total):
        self.total, self.done, self.seconds = total, 0, {}
        self.name, self.started = None, None

    def __call__(self, name, message):
        self.end()
        self.done += 1
        self.name, self.started = name, time.perf_counter()
        log(f"[{self.done}/{self.total}] {message}")

    def end(self):
        if self.name is not None:
            self.seconds[self.name] = round(time.perf_counter() - self.started, 1)
            log(f"      {self.name}: {self.seconds[self.name]} s")
            self.name = None


def run_demo(args):
    """Runs the demo of `args.task`; returns its summary (the figures, the folders, samples)."""
    from vlm_keras.data.scenes.dataset import write_scenes_dataset

    started = time.perf_counter()
    workdir = pathlib.Path(args.workdir)
    data_dir = workdir / "data" / f"scenes-n{args.num_images}-seed{args.seed}"
    name = {"captioning": "captioner"}.get(args.task, args.task)
    model_dir, export_dir = workdir / "saved_models" / f"{name}_model", workdir / "saved_models" / name
    stage = _Stages(4)
    stage("scenes", f"scenes dataset -> {data_dir}")
    write_scenes_dataset(data_dir, num_images=args.num_images, seed=args.seed)
    options = dict(data=str(data_dir), epochs=args.epochs or DEMO_EPOCHS[args.task], image_size=args.image_size,
                   seed=args.seed, out=model_dir)
    demo = {"captioning": _captioning, "vqa": _vqa, "retrieval": _retrieval}[args.task]
    summary = demo(data_dir, export_dir, options, stage)
    stage.end()
    summary.update({"seconds": round(time.perf_counter() - started, 1), "stage_seconds": stage.seconds,
                    "model_dir": str(model_dir), "export_path": str(export_dir)})
    log(f"done in {summary['seconds']} s")
    return summary


def _captioning(data_dir, export_dir, options, stage):
    """Trains the document's VGG16 + LSTM captioner, exports it, captions 4 test images with the export."""
    import tensorflow as tf

    from vlm_keras.captioning import train_captioner
    from vlm_keras.data.formats import coco
    from vlm_keras.export import load_saved_model

    # VGG16 in bfloat16 where the CPU computes it natively (the demo's 5,400 training and validation
    # images in 7 s instead of 36 s here, 14 s with their outline maps; the features are stored as
    # float32 either way).
    precision = "mixed_bfloat16" if cpu_supports_bfloat16() else "float32"
    stage("train and evaluate", f"training the VGG16 + LSTM captioner with the outline stream "
                                f"({options['epochs']} epochs, {options['image_size']} px, VGG16 features in "
                                f"{precision})")
    with _environment(VLM_KERAS_CAPTION_METRICS=os.environ.get("VLM_KERAS_CAPTION_METRICS", DEMO_CAPTION_METRICS)):
        result = train_captioner(**options, feature_precision=precision)
    stage("export", f"exporting a SavedModel -> {export_dir}")
    result.export(export_dir)
    stage("use the export", "reloading the export and captioning test images")
    _, serve, _ = load_saved_model(export_dir)
    test = coco.load_caption_split(data_dir, "test", check_images=False)
    samples = []
    for path, refs in list(zip(test.image_paths, test.captions))[:4]:
        caption = serve(images=tf.constant([_read(path)]))["captions"].numpy()[0].decode("utf-8")
        samples.append({"image": os.path.relpath(path), "caption": caption, "reference": refs[0]})
        log(f"    {os.path.basename(path)}: {caption!r}   (a reference: {refs[0]!r})")
    m = result.metrics
    figures = {f"{key}_{split}": round(m[f"{key}_{split}"], 4) for split in ("test", "compositional")
               for key in ("coco_bleu4", "coco_cider_d", "coco_rouge_l", "coco_meteor") if f"{key}_{split}" in m}
    return dict(figures, ms_per_caption=round(m["ms_per_caption_test"], 3), train_seconds=round(m["train_seconds"], 1),
                samples=samples)


def _vqa(data_dir, export_dir, options, stage):
    """Trains the attention VQA model, exports it, asks 6 test questions through the export."""
    import tensorflow as tf

    from vlm_keras.data.formats.vqa import load_vqa_split
    from vlm_keras.data.scenes.dataset import write_vqa_dataset
    from vlm_keras.export import load_saved_model
    from vlm_keras.vqa import train_vqa

    write_vqa_dataset(data_dir, seed=options["seed"])
    stage("train and evaluate", f"training the attention VQA model ({options['epochs']} epochs, "
                                f"{options['image_size']} px)")
    result = train_vqa(model="attention", **options)
    stage("export", f"exporting a SavedModel -> {export_dir}")
    result.export(export_dir)
    stage("use the export", "reloading the export and asking questions about test images")
    _, serve, _ = load_saved_model(export_dir)
    test = load_vqa_split(data_dir, "test", check_images=False)
    samples = []
    for path, question, truth in list(zip(test.image_paths, test.questions, test.multiple_choice_answers))[:6]:
        out = serve(images=tf.constant([_read(path)]), questions=tf.constant([question]))
        answer = out["answer"].numpy()[0].decode("utf-8")
        samples.append({"image": os.path.relpath(path), "question": question, "answer": answer, "truth": truth})
        log(f"    {os.path.basename(path)}: {question!r} -> {answer!r} (truth: {truth!r})")
    m = result.metrics
    return {"accuracy_test": round(m["accuracy_test"], 4),
            "accuracy_compositional": round(m["accuracy_compositional"], 4),
            "per_question_type_test": {k: round(v, 4) for k, v in m["per_question_type_test"].items()},
            "train_seconds": round(m["train_seconds"], 1), "samples": samples}


def _retrieval(data_dir, export_dir, options, stage):
    """Trains the dual encoder, exports it, indexes the test images with the export and searches
    them with test captions."""
    from vlm_keras.data.formats import coco
    from vlm_keras.retrieval import train_retrieval
    from vlm_keras.retrieval.index import index_folder, load_index, open_embedder, search

    index_file = export_dir.parent / "test_images.npz"
    stage("train and evaluate", f"training the dual encoder contrastively ({options['epochs']} epochs, "
                                f"{options['image_size']} px)")
    result = train_retrieval(**options)
    stage("export", f"exporting a SavedModel -> {export_dir}")
    result.export(export_dir)
    stage("use the export", f"indexing the test images with the export -> {index_file}; searching them "
                            "with test captions")
    index_folder(export_dir, data_dir / "test", index_file)
    test = coco.load_caption_split(data_dir, "test", check_images=False)
    index, embedder = load_index(index_file), open_embedder(export_dir)
    samples = []
    for path, refs in list(zip(test.image_paths, test.captions))[:4]:
        hits = search(index, refs[0], k=5, embedder=embedder)
        found = [os.path.samefile(hit["path"], path) for hit in hits]
        rank = found.index(True) + 1 if any(found) else None
        samples.append({"query": refs[0], "image": os.path.relpath(path), "rank_in_top5": rank,
                        "top1": os.path.relpath(hits[0]["path"]), "top1_score": round(hits[0]["score"], 4)})
        log(f"    {refs[0]!r}: its image {'ranked ' + str(rank) if rank else 'not in the top 5'}")
    m = result.metrics
    summary = {f"{k}_{split}": round(m[f"{k}_{split}"], 4) for split in ("test", "compositional")
               for k in ("text_to_image_r1", "text_to_image_r10", "image_to_text_r1", "image_to_text_r10")}
    summary.update({"train_seconds": round(m["train_seconds"], 1), "index": str(index_file), "samples": samples})
    return summary


@contextlib.contextmanager
def _environment(**variables):
    """Sets environment variables for the block; restores them after."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _read(path):
    with open(path, "rb") as file:
        return file.read()
