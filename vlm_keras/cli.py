"""The `vlm-keras` command.

Every expected failure (bad input: a missing file, a corrupt image, a folder with no model or the
model of another task; or a bad environment: a full disk, no permission) is one line on stderr,
`vlm-keras: error: ...`, with exit code 2; `--debug` adds its traceback. Only a genuine bug
prints a traceback by itself. Progress goes to stderr; results (JSON, captions) go to stdout. The
`train` options are generated from the task configs (`vlm_keras.config`), so they and the Python
API share their defaults.
"""

import argparse
import contextlib
import errno
import json
import os
import pathlib
import sys
import traceback
import zipfile

# Before TensorFlow is imported: fewer C++ info lines on stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from vlm_keras.config import (RunConfig, TASK_CONFIGS, VQAConfig, add_arguments,  # noqa: E402  (no TF import)
                              from_arguments)
from vlm_keras.errors import VlmKerasError  # noqa: E402
from vlm_keras.io import log  # noqa: E402

TRAIN_HELP = {"captioner": "image captioning: VGG16 + an LSTM, attention or Transformer decoder",
              "vqa": "visual question answering", "retrieval": "image-text retrieval: a contrastive dual encoder"}


class UsageError(VlmKerasError, ValueError):
    """A command line argparse rejects: reported as one line like every other error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _add_evaluation_options(parser, questions=False):
    """The options every `evaluate` command shares."""
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--split", default="test")
    add_arguments(parser, RunConfig, only=("data", "num_images", "seed", "data_root", "annotations", "images"))
    if questions:
        add_arguments(parser, VQAConfig, only=("questions",))


def build_parser():
    from vlm_keras.demo import add_demo_arguments

    parser = _Parser(prog="vlm-keras", description="Vision-language models in Keras 3.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error too")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    add_demo_arguments(commands.add_parser("demo", help="scenes dataset -> train -> evaluate -> export -> use"))

    data = commands.add_parser("data", help="write a dataset")
    data_kinds = data.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    scenes = data_kinds.add_parser("scenes", aliases=["shapes"],
                                   help="the synthetic scenes, COCO captions (and VQA v2 questions) layout")
    scenes.add_argument("--out", required=True)
    add_arguments(scenes, RunConfig, only=("num_images", "seed"))

    train = commands.add_parser("train", help="train a model")
    train_kinds = train.add_subparsers(dest="task", metavar="TASK", required=True)
    for task, config_class in TASK_CONFIGS.items():
        add_arguments(train_kinds.add_parser(task, help=TRAIN_HELP[task]), config_class, required=("out",))

    evaluate = commands.add_parser("evaluate", help="score a model; JSON on stdout")
    eval_kinds = evaluate.add_subparsers(dest="task", metavar="TASK", required=True)
    ecap = eval_kinds.add_parser("captioner", help="the COCO caption metrics (BLEU-1..4, CIDEr-D, ROUGE-L, "
                                                   "METEOR, SPICE) over all references")
    _add_evaluation_options(ecap)
    ecap.add_argument("--predictions", help="write captions here in the COCO results format")
    ecap.add_argument("--beam-size", type=_positive_int, default=1, help="1: greedy; k > 1: beam search")
    ecap.add_argument("--pointing", action="store_true", help="also play the pointing game (synthetic scenes, "
                                                             "attention and transformer captioners): does a "
                                                             "word's attention peak on the object it names")
    evqa = eval_kinds.add_parser("vqa", help="official VQA accuracy, overall and per type (questions without "
                                             "answers, as VQA v2 test-dev: answered and written, not scored)")
    _add_evaluation_options(evqa, questions=True)
    evqa.add_argument("--predictions", help="write answers here in the VQA results format")
    evqa.add_argument("--pointing", action="store_true", help="also play the pointing game (synthetic scenes, "
                                                             "attention heads): does the attention of a "
                                                             "question about one object peak on it")
    eret = eval_kinds.add_parser("retrieval", help="Recall@1/5/10 both ways and median rank, "
                                                   "every image of the split against every caption")
    _add_evaluation_options(eret)
    eret.add_argument("--true-matches", action="store_true", help="also score counting every true pair as right "
                                                                  "(synthetic scenes: a caption as true of another "
                                                                  "image of the split finds a right image there)")

    score = commands.add_parser("score", help="score a results file with the field's metrics; JSON on stdout")
    score_kinds = score.add_subparsers(dest="kind", metavar="KIND", required=True)
    scap = score_kinds.add_parser("captions", help="the COCO caption metrics (as pycocoevalcap) of a COCO "
                                                   "results file, from any project")
    scap.add_argument("annotations", metavar="ANNOTATIONS.json", help="COCO captions annotations (the references)")
    scap.add_argument("results", metavar="RESULTS.json", help='[{"image_id": ..., "caption": ...}]: the images '
                                                               "scored are those in this file")
    scap.add_argument("--metrics", default=None, help="comma-separated: bleu,cider,rouge,meteor,spice "
                                                      "(default: all; METEOR and SPICE when they can run)")
    scap.add_argument("--per-image", metavar="FILE", help="also write every image's scores here (JSON)")

    index = commands.add_parser("index", help="embed a folder of images into a searchable index")
    index.add_argument("--model", required=True, help="retrieval model folder or exported SavedModel")
    index.add_argument("images_dir", metavar="IMAGES_DIR")
    index.add_argument("--out", required=True, metavar="INDEX", help="index file to write (.npz)")
    index.add_argument("--batch-size", type=_positive_int, default=32)

    search = commands.add_parser("search", help="rank an index's images by a text query")
    search.add_argument("--index", required=True, help="index file written by `vlm-keras index`")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("-k", "--top-k", type=_positive_int, default=5, help="how many results")
    search.add_argument("--model", help="the model to embed the query with (default: the index's)")

    ask = commands.add_parser("ask", help="answer a question about an image")
    ask.add_argument("--model", required=True, help="VQA model folder or exported SavedModel")
    ask.add_argument("image", metavar="IMAGE")
    ask.add_argument("question", metavar="QUESTION")
    ask.add_argument("--top-k", type=_positive_int, default=3, help="how many answers to list (default 3)")
    ask.add_argument("--attention-map", metavar="PNG", help="draw where the question looked (attention model folders)")

    caption = commands.add_parser("caption", help="caption image files")
    caption.add_argument("--model", required=True, help="model folder or exported SavedModel")
    caption.add_argument("images", nargs="+", metavar="IMAGE")
    caption.add_argument("--beam-size", type=_positive_int, default=1, help="1: greedy; k > 1: beam search")
    caption.add_argument("--attention-map", metavar="PNG",
                         help="draw the regions each word attended to (attention/transformer model "
                              "folders); with several images, PNG gets -1, -2, ... before its suffix")

    export = commands.add_parser("export", help="export a model folder as a SavedModel")
    export.add_argument("--model", required=True)
    export.add_argument("--out", required=True)
    return parser


def main(argv=None, hard_exit=False):
    """Runs the command; returns its exit code (0, 2 for an expected failure, 130 on Ctrl-C).

    `hard_exit` (the console script) leaves at once after a full-disk error: h5py crashes the
    interpreter's shutdown after one (a segfault), which would hide the message's exit code."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = argparse.Namespace(debug="--debug" in argv)
    try:
        args = parser.parse_args(argv)
        if args.version:
            from vlm_keras import __version__

            print(__version__)
            return 0
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        # Keras writes progress bars to stdout; keep stdout for results (JSON, captions).
        with contextlib.redirect_stdout(sys.stderr):
            lines = COMMANDS[args.command](args)
        for line in lines:
            print(line)
        return 0
    except KeyboardInterrupt:
        print("vlm-keras: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001  (sorted below: expected failures and bugs)
        if not expected_failure(err):
            raise  # a bug: its traceback is what is needed
        if args.debug:
            traceback.print_exc()
        print(f"vlm-keras: error: {one_line(err)}", file=sys.stderr, flush=True)
        if hard_exit and isinstance(err, OSError) and err.errno == errno.ENOSPC:
            sys.stdout.flush()
            os._exit(2)
        return 2


def run():
    """The console script `vlm-keras`."""
    sys.exit(main(hard_exit=True))


def expected_failure(error):
    """True for errors that describe bad input or a bad environment, not a bug of vlm_keras: its
    own errors, ValueErrors (what our checks raise), OS errors (missing files, permissions, a
    full disk), damaged archives and TensorFlow's op errors (e.g. out of memory or disk)."""
    if isinstance(error, (VlmKerasError, ValueError, OSError, zipfile.BadZipFile)):
        return True
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, tf.errors.OpError)


def one_line(error):
    """The error's message on one line, at most 600 characters, with its type when it is not ours."""
    message = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, VlmKerasError) and type(error).__name__ not in message:
        message = f"{message} ({type(error).__name__})"
    return message if len(message) <= 600 else message[:597] + "..."


def _data_options(args):
    options = {"num_images": args.num_images, "seed": args.seed, "data_root": args.data_root}
    for name in ("annotations", "images", "questions"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    return options


def cmd_data(args):
    from vlm_keras.data.scenes.dataset import write_scenes_dataset

    out = write_scenes_dataset(args.out, num_images=args.num_images, seed=args.seed)
    return [json.dumps({"data_dir": str(out)})]


def cmd_train(args):
    from vlm_keras.captioning import train_captioner
    from vlm_keras.retrieval import train_retrieval
    from vlm_keras.vqa import train_vqa

    train = {"captioner": train_captioner, "vqa": train_vqa, "retrieval": train_retrieval}[args.task]
    result = train(config=from_arguments(TASK_CONFIGS[args.task], args))
    return [json.dumps(dict(result.metrics, model_dir=str(args.out)))]


def cmd_evaluate(args):
    from vlm_keras.load import TASK_CLASSES

    task = {"captioner": "captioning"}.get(args.task, args.task)
    model = TASK_CLASSES[task].load(args.model)
    options = dict(split=args.split, **_data_options(args))
    if args.task == "captioner":
        options["beam_size"] = args.beam_size
    if args.task in ("captioner", "vqa"):
        options.update(predictions=args.predictions, pointing=args.pointing)
    if args.task == "retrieval":
        options["true_matches"] = args.true_matches
    report = model.evaluate(args.data, **options)
    return [json.dumps(dict(report, split=args.split))]


def cmd_score(args):
    from vlm_keras.metrics.coco_caption import ALL_METRICS as COCO_CAPTION_METRICS  # no TensorFlow import
    from vlm_keras.data.formats.coco import read_caption_references, read_coco_results
    from vlm_keras.io import check_output_file, write_json
    from vlm_keras.metrics import evaluate_captions

    metrics = COCO_CAPTION_METRICS if args.metrics is None else tuple(m for m in args.metrics.split(",") if m)
    unknown = sorted(set(metrics) - set(COCO_CAPTION_METRICS))
    if unknown or not metrics:
        raise ValueError(f"--metrics {args.metrics!r}: expected some of {', '.join(COCO_CAPTION_METRICS)}")
    if args.per_image:
        check_output_file(args.per_image, [args.annotations, args.results], "--per-image")
    references = read_caption_references(args.annotations)
    results = read_coco_results(args.results, references)
    # The images scored are those of the results file, in its order (as COCOEvalCap scores them).
    scores = evaluate_captions({i: references[i] for i in results}, results, metrics=metrics)
    if args.per_image:
        write_json(args.per_image, {str(i): s for i, s in scores["per_image"].items()}, indent=1)
    summary = {f"coco_{name}": value for name, value in scores["corpus"].items()}
    summary.update(num_images=len(results), unavailable_metrics=scores["unavailable"])
    return [json.dumps(summary)]


def cmd_index(args):
    from vlm_keras.retrieval.index import index_folder

    summary = index_folder(args.model, args.images_dir, args.out, batch_size=args.batch_size)
    for skipped in summary["skipped"]:
        log(f"skipped {skipped['path']}: {skipped['error']}")
    return [json.dumps(summary)]


def cmd_search(args):
    from vlm_keras.retrieval.index import search

    results = search(args.index, args.query, k=args.top_k, model_path=args.model)
    return [json.dumps({"query": args.query, "results": results})]


def cmd_ask(args):
    from vlm_keras.data.images import read_image_bytes
    from vlm_keras.export import is_saved_model

    if not args.question.strip():
        raise ValueError("the question is empty")
    encoded = read_image_bytes(args.image)
    if is_saved_model(args.model):
        if args.attention_map:
            raise ValueError(f"--attention-map needs a model folder; '{args.model}' is an exported SavedModel")
        import tensorflow as tf

        _, serve = _open_export(args.model, "vqa", "ask")
        out = serve(images=tf.constant([encoded]), questions=tf.constant([args.question]))
        top = [[a.decode("utf-8"), float(p)] for a, p in
               zip(out["top_k_answers"].numpy()[0], out["top_k_probabilities"].numpy()[0])][:args.top_k]
        result = {"answer": top[0][0], "probability": top[0][1], "top_k": top}
    else:
        from vlm_keras.vqa import VQAModel

        model = VQAModel.load(args.model)
        result = model.answer([encoded], [args.question], top_k=args.top_k)[0]
        if args.attention_map:
            from vlm_keras.visualize import plot_attention_map

            weights = model.attention([encoded], [args.question])
            plot_attention_map(args.image, [result["answer"]], weights, args.attention_map,
                               title=f"{args.question} -> {result['answer']}")
            log(f"attention map -> {args.attention_map}")
    return [json.dumps(dict(image=args.image, question=args.question, **result))]


def cmd_caption(args):
    from vlm_keras.data.images import read_image_bytes
    from vlm_keras.export import is_saved_model

    encoded = [read_image_bytes(p) for p in args.images]  # names the first bad file, if any
    if is_saved_model(args.model):
        if args.attention_map:
            raise ValueError(f"--attention-map needs a model folder; '{args.model}' is an exported "
                             "SavedModel (use the folder that `train` wrote)")
        import tensorflow as tf

        loaded, serve = _open_export(args.model, "captioning", "caption")
        images = tf.constant(encoded)
        if args.beam_size > 1:
            out = loaded.signatures["beam_search"](images=images, beam_size=tf.constant(args.beam_size))
        else:
            out = serve(images=images)
        captions = [c.decode("utf-8") for c in out["captions"].numpy()]
    else:
        from vlm_keras.captioning import Captioner

        captioner = Captioner.load(args.model)
        if args.attention_map:
            from vlm_keras.visualize import plot_attention_map

            results = captioner.attention(encoded, beam_size=args.beam_size)
            for i, (path, result) in enumerate(zip(args.images, results)):
                target = pathlib.Path(args.attention_map)
                if len(args.images) > 1:
                    target = target.with_name(f"{target.stem}-{i + 1}{target.suffix or '.png'}")
                plot_attention_map(path, result["words"], result["weights"], target)
                log(f"attention map for {path} -> {target}")
            captions = [r["caption"] for r in results]
        else:
            captions = captioner.caption(encoded, beam_size=args.beam_size)
    return [f"{path}\t{text}" for path, text in zip(args.images, captions)]


def _open_export(path, task, command):
    """An exported SavedModel of `task`: (the loaded object, its serving signature); ExportError
    naming the export's own task otherwise."""
    from vlm_keras.export import ExportError, load_saved_model

    loaded, serve, info = load_saved_model(path)
    if info.get("task") != task:
        raise ExportError(f"'{path}' is a SavedModel of a {info.get('task', 'unknown')} model; "
                          f"`vlm-keras {command}` needs a {task} model")
    return loaded, serve


def cmd_export(args):
    from vlm_keras.load import load_model

    path = load_model(args.model).export(args.out)
    return [json.dumps({"export_path": str(path)})]


def cmd_demo(args):
    from vlm_keras.demo import run_demo

    return [json.dumps(run_demo(args))]


COMMANDS = {"demo": cmd_demo, "data": cmd_data, "train": cmd_train, "evaluate": cmd_evaluate, "ask": cmd_ask,
            "caption": cmd_caption, "export": cmd_export, "index": cmd_index, "search": cmd_search,
            "score": cmd_score}

if __name__ == "__main__":
    sys.exit(main())
