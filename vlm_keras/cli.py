"""The `vlm-keras` command.

Every command reports bad input (a missing file, a corrupt image, a folder with no model) as one
line on stderr, `vlm-keras: error: ...`, with exit code 2, never a traceback. Progress goes to
stderr; results (JSON, captions) go to stdout.
"""

import argparse
import contextlib
import json
import os
import pathlib
import sys
import time

# Before TensorFlow is imported: fewer C++ info lines on stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from vlm_keras.distribute import STRATEGIES  # noqa: E402  (no TensorFlow import)
from vlm_keras.precision import PRECISIONS  # noqa: E402

DEMO_DEFAULTS = {"num_images": 6000, "epochs": 8, "vqa_epochs": 10, "retrieval_epochs": 10, "image_size": 64}


def _weights(value):
    return None if value.lower() == "none" else value


def _add_training_options(parser):
    """The options every `train` command shares."""
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--weights", type=_weights, default=None,
                        help="VGG16 weights: none (default, random), imagenet, or a local .h5 path")
    parser.add_argument("--num-images", type=int, default=6000, help="for --data shapes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", default="auto", choices=STRATEGIES,
                        help="tf.distribute strategy (auto: multi_worker when TF_CONFIG names a cluster, "
                             "mirrored with 2+ GPUs, else default)")
    parser.add_argument("--precision", default="float32", choices=PRECISIONS)
    parser.add_argument("--backup-every", type=int, default=200,
                        help="steps between backups that a crashed run resumes from (default 200)")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also log TensorBoard scalars (and sample captions) under OUT/checkpoints")


def _training_options(args):
    return dict(image_size=args.image_size, batch_size=args.batch_size, weights=args.weights,
                num_images=args.num_images, seed=args.seed, strategy=args.strategy,
                precision=args.precision, backup_every=args.backup_every, tensorboard=args.tensorboard)


def _add_evaluation_options(parser):
    """The options every `evaluate` command shares."""
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--data", default="shapes")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num-images", type=int, default=6000, help="for --data shapes")
    parser.add_argument("--seed", type=int, default=0, help="for --data shapes")


def build_parser():
    parser = argparse.ArgumentParser(prog="vlm-keras", description="Vision-language models in Keras 3.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", help="scenes dataset -> train -> evaluate -> export -> caption")
    demo.add_argument("--task", default="captioning", choices=["captioning", "vqa", "retrieval"])
    demo.add_argument("--workdir", default=".", help="where data/ and saved_models/ go (default: .)")
    demo.add_argument("--num-images", type=int, default=DEMO_DEFAULTS["num_images"])
    demo.add_argument("--epochs", type=int, help=f"default {DEMO_DEFAULTS['epochs']} (captioning), "
                                                     f"{DEMO_DEFAULTS['vqa_epochs']} (vqa), "
                                                     f"{DEMO_DEFAULTS['retrieval_epochs']} (retrieval)")
    demo.add_argument("--image-size", type=int, default=DEMO_DEFAULTS["image_size"])
    demo.add_argument("--seed", type=int, default=0)

    data = commands.add_parser("data", help="write a dataset")
    data_kinds = data.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    shapes = data_kinds.add_parser("shapes", help="the synthetic scenes dataset, COCO captions format")
    shapes.add_argument("--out", required=True)
    shapes.add_argument("--num-images", type=int, default=6000, help="train + val + test images")
    shapes.add_argument("--seed", type=int, default=0)

    train = commands.add_parser("train", help="train a model")
    train_kinds = train.add_subparsers(dest="task", metavar="TASK", required=True)
    cap = train_kinds.add_parser("captioner", help="VGG16 + LSTM image captioner")
    cap.add_argument("--data", default="shapes", help="'shapes' or a COCO-format folder")
    cap.add_argument("--out", required=True, help="model folder to write")
    cap.add_argument("--model-type", default="lstm", choices=["lstm", "attention", "transformer"],
                     help="lstm: the document's VGG16+LSTM; attention: attends over the VGG16 grid per "
                          "word; transformer: Transformer decoder over the grid")
    cap.add_argument("--epochs", type=int, default=15)
    cap.add_argument("--learning-rate", type=float, default=None,
                     help="Adam's learning rate (default 3e-3; 1e-3 for the transformer)")
    cap.add_argument("--fine-tune", action="store_true", help="train VGG16 too (slow on a CPU)")
    _add_training_options(cap)

    vqa = train_kinds.add_parser("vqa", help="visual question answering")
    vqa.add_argument("--data", default="shapes", help="'shapes' or a VQA-v2-format folder")
    vqa.add_argument("--out", required=True, help="model folder to write")
    vqa.add_argument("--model-type", default="attention", choices=["concat", "attention", "question_only"],
                     help="concat: the document's network; attention: the question attends over the "
                          "VGG16 grid; question_only: the blind baseline")
    vqa.add_argument("--epochs", type=int, default=10)
    vqa.add_argument("--learning-rate", type=float, default=2e-3)
    _add_training_options(vqa)

    ret = train_kinds.add_parser("retrieval", help="image-text retrieval: a contrastive dual encoder")
    ret.add_argument("--data", default="shapes", help="'shapes' or a COCO-format folder")
    ret.add_argument("--out", required=True, help="model folder to write")
    ret.add_argument("--pooling", default="attention", choices=["attention", "flatten", "mean"],
                     help="how the image tower pools the VGG16 grid: attention (default) over the regions "
                          "and their positions, flatten (every cell keeps its place), mean (a baseline)")
    ret.add_argument("--epochs", type=int, default=10)
    ret.add_argument("--learning-rate", type=float, default=1e-3)
    ret.add_argument("--temperature", type=float, default=0.07, help="initial temperature (learned)")
    ret.add_argument("--embed-dim", type=int, default=256)
    ret.add_argument("--feature-layer", default="block3_pool",
                     help="the VGG16 layer the image tower reads: block3_pool (default), block4_pool, "
                          "block5_conv3 or block5_pool")
    _add_training_options(ret)
    ret.set_defaults(batch_size=256)  # in-batch negatives: a bigger batch gives more of them

    evaluate = commands.add_parser("evaluate", help="score a model; JSON on stdout")
    eval_kinds = evaluate.add_subparsers(dest="task", metavar="TASK", required=True)
    ecap = eval_kinds.add_parser("captioner", help="BLEU-1..4 over all references")
    _add_evaluation_options(ecap)
    ecap.add_argument("--predictions", help="write captions here in the COCO results format")
    ecap.add_argument("--beam-size", type=int, default=1, help="1: greedy; k > 1: beam search")

    evqa = eval_kinds.add_parser("vqa", help="official VQA accuracy, overall and per type")
    _add_evaluation_options(evqa)
    evqa.add_argument("--predictions", help="write answers here in the VQA results format")

    eret = eval_kinds.add_parser("retrieval", help="Recall@1/5/10 both ways and median rank, "
                                                   "every image of the split against every caption")
    _add_evaluation_options(eret)

    index = commands.add_parser("index", help="embed a folder of images into a searchable index")
    index.add_argument("--model", required=True, help="retrieval model folder or exported SavedModel")
    index.add_argument("images_dir", metavar="IMAGES_DIR")
    index.add_argument("--out", required=True, metavar="INDEX", help="index file to write (.npz)")
    index.add_argument("--batch-size", type=int, default=32)

    search = commands.add_parser("search", help="rank an index's images by a text query")
    search.add_argument("--index", required=True, help="index file written by `vlm-keras index`")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("-k", "--top-k", type=int, default=5, help="how many results")
    search.add_argument("--model", help="the model to embed the query with (default: the index's)")

    ask = commands.add_parser("ask", help="answer a question about an image")
    ask.add_argument("--model", required=True, help="VQA model folder or exported SavedModel")
    ask.add_argument("image", metavar="IMAGE")
    ask.add_argument("question", metavar="QUESTION")
    ask.add_argument("--top-k", type=int, default=3)
    ask.add_argument("--attention-map", metavar="PNG", help="draw where the question looked (attention model folders)")

    caption = commands.add_parser("caption", help="caption image files")
    caption.add_argument("--model", required=True, help="model folder or exported SavedModel")
    caption.add_argument("images", nargs="+", metavar="IMAGE")
    caption.add_argument("--beam-size", type=int, default=1, help="1: greedy; k > 1: beam search")
    caption.add_argument("--attention-map", metavar="PNG",
                         help="draw the regions each word attended to (attention/transformer model "
                              "folders); with several images, PNG gets -1, -2, ... before its suffix")

    export = commands.add_parser("export", help="export a model folder as a SavedModel")
    export.add_argument("--model", required=True)
    export.add_argument("--out", required=True)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from vlm_keras import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        # Keras writes progress bars to stdout; keep stdout for results (JSON, captions).
        with contextlib.redirect_stdout(sys.stderr):
            lines = COMMANDS[args.command](args)
        for line in lines:
            print(line)
        return 0
    except KeyboardInterrupt:
        print("vlm-keras: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as err:
        # Our own errors (DatasetError, ImageError, ModelFolderError, ...) are ValueErrors that
        # already name the file at fault; one line, no traceback.
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"vlm-keras: error: {message}", file=sys.stderr)
        return 2


def _data_kwargs(args):
    return {"num_images": args.num_images, "seed": args.seed}


def cmd_data(args):
    from vlm_keras.data.shapes_dataset import write_shapes_dataset

    out = write_shapes_dataset(args.out, num_images=args.num_images, seed=args.seed)
    return [json.dumps({"data_dir": str(out)})]


def cmd_train(args):
    if args.task == "retrieval":
        from vlm_keras.train import train_retrieval

        result = train_retrieval(data=args.data, pooling=args.pooling, epochs=args.epochs,
                                 learning_rate=args.learning_rate, temperature=args.temperature, out=args.out,
                                 feature_layer=args.feature_layer, embed_dim=args.embed_dim,
                                 **_training_options(args))
    elif args.task == "vqa":
        from vlm_keras.train import train_vqa

        result = train_vqa(data=args.data, model=args.model_type, epochs=args.epochs,
                           learning_rate=args.learning_rate, out=args.out, **_training_options(args))
    else:
        from vlm_keras.train import train_captioner

        result = train_captioner(data=args.data, model=args.model_type, epochs=args.epochs,
                                 learning_rate=args.learning_rate, fine_tune=args.fine_tune, out=args.out,
                                 **_training_options(args))
    return [json.dumps(dict(result.metrics, model_dir=str(args.out)))]


def cmd_evaluate(args):
    if args.task == "retrieval":
        from vlm_keras.retrieval import RetrievalModel

        report = RetrievalModel.load(args.model).evaluate(args.data, split=args.split, **_data_kwargs(args))
        return [json.dumps(dict(report, split=args.split))]
    if args.task == "vqa":
        from vlm_keras.vqa import VQAModel

        report = VQAModel.load(args.model).evaluate(args.data, split=args.split,
                                                    predictions=args.predictions, **_data_kwargs(args))
        return [json.dumps(dict(report, split=args.split))]
    from vlm_keras.captioning import Captioner

    captioner = Captioner.load(args.model)
    scores = captioner.evaluate(args.data, split=args.split, predictions=args.predictions,
                                beam_size=args.beam_size, **_data_kwargs(args))
    return [json.dumps(dict(scores, split=args.split))]


def cmd_index(args):
    from vlm_keras.index import index_folder

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    summary = index_folder(args.model, args.images_dir, args.out, batch_size=args.batch_size)
    for skipped in summary["skipped"]:
        _say(f"skipped {skipped['path']}: {skipped['error']}")
    return [json.dumps(summary)]


def cmd_search(args):
    from vlm_keras.index import search

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

        from vlm_keras.export import load_saved_model

        _, serve, _ = load_saved_model(args.model)
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
            _say(f"attention map -> {args.attention_map}")
    return [json.dumps(dict(image=args.image, question=args.question, **result))]


def cmd_caption(args):
    from vlm_keras.data.images import read_image_bytes
    from vlm_keras.export import is_saved_model

    if args.beam_size < 1:
        raise ValueError(f"--beam-size must be >= 1, got {args.beam_size}")
    encoded = [read_image_bytes(p) for p in args.images]  # names the first bad file, if any
    if is_saved_model(args.model):
        if args.attention_map:
            raise ValueError(f"--attention-map needs a model folder; '{args.model}' is an exported "
                             "SavedModel (use the folder that `train` wrote)")
        import tensorflow as tf

        from vlm_keras.export import load_saved_model

        loaded, serve, _ = load_saved_model(args.model)
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
                _say(f"attention map for {path} -> {target}")
            captions = [r["caption"] for r in results]
        else:
            captions = captioner.caption(encoded, beam_size=args.beam_size)
    return [f"{path}\t{text}" for path, text in zip(args.images, captions)]


def cmd_export(args):
    from vlm_keras.bundle import load_model

    path = load_model(args.model).export(args.out)
    return [json.dumps({"export_path": str(path)})]


def cmd_demo(args):
    """Scenes -> train -> evaluate -> export -> reload the export -> caption a few test images."""
    if args.task == "vqa":
        return _demo_vqa(args)
    if args.task == "retrieval":
        return _demo_retrieval(args)
    import tensorflow as tf

    from vlm_keras.data import coco
    from vlm_keras.data.shapes_dataset import write_shapes_dataset
    from vlm_keras.export import load_saved_model
    from vlm_keras.train import train_captioner

    started = time.perf_counter()
    data_dir, model_dir, export_dir = _demo_folders(args, "captioner")
    _say(f"[1/5] scenes dataset -> {data_dir}")
    write_shapes_dataset(data_dir, num_images=args.num_images, seed=args.seed)
    epochs = args.epochs or DEMO_DEFAULTS["epochs"]
    _say(f"[2/5] training the VGG16 + LSTM captioner ({epochs} epochs, {args.image_size} px)")
    result = train_captioner(data=str(data_dir), epochs=epochs, image_size=args.image_size,
                             seed=args.seed, out=model_dir)
    _say(f"[3/5] exporting a SavedModel -> {export_dir}")
    result.export(export_dir)
    _say("[4/5] reloading the export and captioning test images")
    _, serve, _ = load_saved_model(export_dir)
    test = coco.load_caption_split(data_dir, "test", check_images=False)
    samples = []
    for image_id, path, refs in list(zip(test.image_ids, test.image_paths, test.captions))[:4]:
        with open(path, "rb") as f:
            caption = serve(images=tf.constant([f.read()]))["captions"].numpy()[0].decode("utf-8")
        samples.append({"image": os.path.relpath(path), "caption": caption, "reference": refs[0]})
        _say(f"    {os.path.basename(path)}: {caption!r}   (a reference: {refs[0]!r})")
    m = result.metrics
    summary = {
        "bleu1_test": round(m["bleu1_test"], 4),
        "bleu4_test": round(m["bleu4_test"], 4),
        "bleu4_compositional": round(m["bleu4_compositional"], 4),
        "ms_per_caption": round(m["ms_per_caption_test"], 3),
        "train_seconds": round(m["train_seconds"], 1),
        "seconds": round(time.perf_counter() - started, 1),
        "model_dir": str(model_dir),
        "export_path": str(export_dir),
        "samples": samples,
    }
    _say("[5/5] done")
    return [json.dumps(summary)]


def _demo_vqa(args):
    """Scenes + questions -> train the attention VQA model -> accuracy -> export -> reload -> ask."""
    import tensorflow as tf

    from vlm_keras.data.shapes_dataset import write_shapes_dataset
    from vlm_keras.data.vqa import load_vqa_split
    from vlm_keras.data.vqa_dataset import write_vqa_dataset
    from vlm_keras.export import load_saved_model
    from vlm_keras.train import train_vqa

    started = time.perf_counter()
    data_dir, model_dir, export_dir = _demo_folders(args, "vqa")
    _say(f"[1/5] scenes dataset with VQA v2 questions -> {data_dir}")
    write_shapes_dataset(data_dir, num_images=args.num_images, seed=args.seed)
    write_vqa_dataset(data_dir, seed=args.seed)
    epochs = args.epochs or DEMO_DEFAULTS["vqa_epochs"]
    _say(f"[2/5] training the attention VQA model ({epochs} epochs, {args.image_size} px)")
    result = train_vqa(data=str(data_dir), model="attention", epochs=epochs, image_size=args.image_size,
                       seed=args.seed, out=model_dir)
    _say(f"[3/5] exporting a SavedModel -> {export_dir}")
    result.export(export_dir)
    _say("[4/5] reloading the export and asking questions about test images")
    _, serve, _ = load_saved_model(export_dir)
    test = load_vqa_split(data_dir, "test", check_images=False)
    samples = []
    for path, question, truth in list(zip(test.image_paths, test.questions, test.multiple_choice_answers))[:6]:
        with open(path, "rb") as f:
            out = serve(images=tf.constant([f.read()]), questions=tf.constant([question]))
        answer = out["answer"].numpy()[0].decode("utf-8")
        samples.append({"image": os.path.relpath(path), "question": question, "answer": answer, "truth": truth})
        _say(f"    {os.path.basename(path)}: {question!r} -> {answer!r} (truth: {truth!r})")
    m = result.metrics
    summary = {"accuracy_test": round(m["accuracy_test"], 4),
               "accuracy_compositional": round(m["accuracy_compositional"], 4),
               "per_question_type_test": {k: round(v, 4) for k, v in m["per_question_type_test"].items()},
               "train_seconds": round(m["train_seconds"], 1),
               "seconds": round(time.perf_counter() - started, 1),
               "model_dir": str(model_dir), "export_path": str(export_dir), "samples": samples}
    _say("[5/5] done")
    return [json.dumps(summary)]


def _demo_retrieval(args):
    """Scenes -> train the dual encoder -> Recall@K -> export -> index the test images with the
    export -> search them with test captions."""
    from vlm_keras.data import coco
    from vlm_keras.data.shapes_dataset import write_shapes_dataset
    from vlm_keras.index import index_folder, load_index, open_embedder, search
    from vlm_keras.train import train_retrieval

    started = time.perf_counter()
    data_dir, model_dir, export_dir = _demo_folders(args, "retrieval")
    index_file = export_dir.parent / "test_images.npz"
    _say(f"[1/5] scenes dataset -> {data_dir}")
    write_shapes_dataset(data_dir, num_images=args.num_images, seed=args.seed)
    epochs = args.epochs or DEMO_DEFAULTS["retrieval_epochs"]
    _say(f"[2/5] training the dual encoder contrastively ({epochs} epochs, {args.image_size} px)")
    result = train_retrieval(data=str(data_dir), epochs=epochs, image_size=args.image_size, seed=args.seed,
                             out=model_dir)
    _say(f"[3/5] exporting a SavedModel -> {export_dir}")
    result.export(export_dir)
    _say(f"[4/5] indexing the test images with the export -> {index_file}")
    index_folder(export_dir, data_dir / "test", index_file)
    _say("[5/5] searching the index with test captions")
    test = coco.load_caption_split(data_dir, "test", check_images=False)
    index, embedder = load_index(index_file), open_embedder(export_dir)
    samples = []
    for path, refs in list(zip(test.image_paths, test.captions))[:4]:
        hits = search(index, refs[0], k=5, embedder=embedder)
        found = [os.path.samefile(hit["path"], path) for hit in hits]
        rank = found.index(True) + 1 if any(found) else None
        samples.append({"query": refs[0], "image": os.path.relpath(path), "rank_in_top5": rank,
                        "top1": os.path.relpath(hits[0]["path"]), "top1_score": round(hits[0]["score"], 4)})
        _say(f"    {refs[0]!r}: its image {'ranked ' + str(rank) if rank else 'not in the top 5'}")
    m = result.metrics
    summary = {f"{k}_{split}": round(m[f"{k}_{split}"], 4) for split in ("test", "compositional")
               for k in ("text_to_image_r1", "text_to_image_r10", "image_to_text_r1", "image_to_text_r10")}
    summary.update({"train_seconds": round(m["train_seconds"], 1), "seconds": round(time.perf_counter() - started, 1),
                    "model_dir": str(model_dir), "export_path": str(export_dir), "index": str(index_file),
                    "samples": samples})
    _say("done")
    return [json.dumps(summary)]


def _demo_folders(args, name):
    """A demo's (data folder, model folder, export folder) under --workdir."""
    workdir = pathlib.Path(args.workdir)
    return (workdir / "data" / f"shapes-n{args.num_images}-seed{args.seed}",
            workdir / "saved_models" / f"{name}_model", workdir / "saved_models" / name)


def _say(message):
    print(message, file=sys.stderr, flush=True)


COMMANDS = {"demo": cmd_demo, "data": cmd_data, "train": cmd_train, "evaluate": cmd_evaluate, "ask": cmd_ask,
            "caption": cmd_caption, "export": cmd_export, "index": cmd_index, "search": cmd_search}

if __name__ == "__main__":
    sys.exit(main())
