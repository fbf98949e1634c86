"""`RunConfig`: the options every trainer shares, with their defaults, written once.

Each `train_*` function takes a task config, a dataclass that extends `RunConfig` with the
task's own options: `CaptionerConfig`, `VQAConfig`, `RetrievalConfig`. The same fields generate
the command line's `train` options (`add_arguments`), so the Python API and the CLI cannot
drift, and `config.json` in a model folder records them (`RunConfig.record`).

```python
from vlm_keras.config import CaptionerConfig
config = CaptionerConfig(model="attention", epochs=5)            # or CaptionerConfig.tiny()
train_captioner(config=config)                                    # the same as
train_captioner(model="attention", epochs=5)
```

This module imports neither TensorFlow nor Keras: the CLI builds its parser from it in
milliseconds. It is longer than the house's 400 lines because it is the one list of every
option of every trainer, each with its help text; split, the CLI and the API would drift apart.
"""

import argparse
import dataclasses
import inspect
import json
from typing import ClassVar

from vlm_keras.distribute import STRATEGIES
from vlm_keras.precision import PRECISIONS

CAPTIONER_TYPES = ("lstm", "attention", "transformer")
VQA_TYPES = ("concat", "attention", "graph", "question_only")
IMAGE_POOLING = ("attention", "flatten", "mean")
FEATURE_LAYERS = ("block5_pool", "block5_conv3", "block4_pool", "block3_pool", "block2_pool")
# Old names still accepted for `data`: the synthetic scenes were called "shapes" before.
SCENES_NAMES = ("scenes", "shapes")


def option(default, help, flag=None, cli=True, choices=None, parse=None, record=True):
    """A config field with what the CLI and config.json need to know about it.

    Args:
        default: the default value (immutable; use `dataclasses.field` for a dict).
        help: the option's one-line description (the CLI's --help).
        flag: the CLI flag; default "--" + the field name with "-" for "_".
        cli: False for options the command line does not offer (Python objects).
        choices: the allowed values.
        parse: turns the CLI string into the value (default: the default's type).
        record: False for options config.json leaves out (callbacks, verbosity, paths).
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "flag": flag, "cli": cli, "choices": choices, "parse": parse, "record": record})


def _weights(text):
    return None if text.lower() == "none" else text


def _split_names(text):
    return tuple(name for name in text.split(",") if name)


def _jit(text):
    lowered = text.lower()
    if lowered not in ("auto", "true", "false"):
        raise argparse.ArgumentTypeError(f"expected auto, true or false, got {text!r}")
    return {"auto": "auto", "true": True, "false": False}[lowered]


def _optional_int(text):
    return None if text.lower() in ("none", "0") else int(text)


@dataclasses.dataclass
class RunConfig:
    """The options every trainer shares.

    `image_size` is 64 by default: the synthetic scenes are legible at 64 px, VGG16 runs four
    times faster than at 128 px (so a CPU trains the tutorials in minutes), and every benchmark in
    the README was measured at 64. For photographs with `weights="imagenet"`, use 224, the size
    VGG16 was trained at.

    Attributes: see each field's `help` (`vlm-keras train captioner --help` prints them).
    """

    data: str = option("scenes", "'scenes' (the synthetic scenes, written on first use), a folder in a "
                       "published layout (COCO, Karpathy's splits, Flickr8k, VQA v2), or tfds:NAME")
    annotations: str = option(None, "annotation files of a dataset in any other layout: FILE (the train split) "
                              "or SPLIT=FILE,... (COCO captions JSON, a Karpathy file, Flickr8k.token.txt; "
                              "VQA v2 annotations), with --images", parse=str)
    images: str = option(None, "the image folder of --annotations (or SPLIT=FOLDER,...)", parse=str)
    epochs: int = option(10, "passes over the training split")
    image_size: int = option(64, "square side images are resized to for VGG16 (use 224 with imagenet weights)")
    batch_size: int = option(128, "examples per replica and step (a step takes batch_size x replicas)")
    learning_rate: float = option(None, "Adam's learning rate (default: the task's)", parse=float)
    weights: str = option(None, "VGG16 weights: none (random; the offline default), imagenet, or a local "
                          ".h5 path", parse=_weights)
    feature_layer: str = option("block3_pool", "the VGG16 layer whose grid the region encoder reads (the frozen "
                                "part, cached); block5_conv3 at 224 px for imagenet weights",
                                choices=FEATURE_LAYERS)
    outline: bool = option(False, "the encoder also reads each image's outline map (where the colour changes, in "
                           "grey): its features follow the pixels' features, channel by channel, and carry the "
                           "shapes without their colours")
    max_length: int = option(None, "words kept per caption or question (default: the 99.9th percentile of the "
                             "training texts)", parse=int)
    min_word_count: int = option(1, "words seen fewer times in training become [UNK] (Karpathy's preprocessing "
                                 "of COCO keeps words seen 5 times or more)")
    num_images: int = option(6000, "images in train + val + test when data is 'scenes'")
    seed: int = option(0, "seeds initialisation, dropout, shuffling and the scenes generator")
    out: str = option(None, "the model folder to write (checkpoints go to OUT/checkpoints)", record=False)
    checkpoint_dir: str = option(None, "where checkpoints, backups and training.csv go (default "
                                 "OUT/checkpoints)", record=False)
    strategy: str = option("auto", "tf.distribute strategy (auto: multi_worker when TF_CONFIG names a "
                           "cluster, mirrored with 2+ GPUs, else default)", choices=STRATEGIES)
    precision: str = option("float32", "float32, or mixed precision for GPUs (float16) and TPUs/CPUs "
                            "(bfloat16)", choices=PRECISIONS)
    feature_precision: str = option("float32", "the frozen encoder's precision when it caches features: "
                                    "mixed_bfloat16 runs VGG16 in bfloat16 (faster on CPUs with AVX512-BF16 or "
                                    "AMX; benchmarks/extract_speed.py), whatever `precision` trains in",
                                    choices=("float32", "mixed_bfloat16"))
    jit_compile: str = option("auto", "XLA for the training step: auto (on with a GPU), true, false", parse=_jit)
    backup_every: int = option(200, "steps between backups that a crashed run resumes from (0: at epoch "
                               "ends only)", parse=_optional_int)
    tensorboard: bool = option(False, "also log TensorBoard scalars (and samples) under OUT/checkpoints")
    eval_splits: tuple = option(("test", "compositional"), "comma-separated splits scored after training "
                                "(missing ones are skipped)", parse=_split_names)
    data_root: str = option(None, "where 'scenes' and TFDS datasets are written (default "
                            "$VLM_KERAS_HOME/datasets)", record=False)
    verbose: int = option(1, "0: silent, 1: progress bars", cli=False, record=False)
    callbacks: tuple = option((), "extra Keras callbacks for fit()", cli=False, record=False)
    model_options: dict = dataclasses.field(default_factory=dict, metadata={
        "help": "sizes for the model builder, e.g. units=256 (repeat the flag)", "flag": "--option",
        "cli": True, "choices": None, "parse": None, "record": True})

    TASK: ClassVar[str] = None

    @property
    def default_outline(self):
        """Whether the encoder reads the outline maps when `outline` is None (a task's choice)."""
        return False

    @property
    def resolved_outline(self):
        """Whether the encoder reads the outline maps too: `outline`, or the task's default."""
        return self.default_outline if self.outline is None else bool(self.outline)

    def stream_options(self, takes_stream=True):
        """`model_options` with the outline stream's defaults for a builder that takes `outline_stream`:
        when the encoder reads the outlines, the region convolutions read them (outline_stream) and a
        32-channel appearance stream the pixels (region_appearance), unless given."""
        options = dict(self.model_options)
        if takes_stream and self.resolved_outline and options.setdefault("outline_stream", True):
            options.setdefault("region_appearance", 32)
        return options

    def _check_outline_stream(self):
        if self.model_options.get("outline_stream") and not self.resolved_outline:
            raise ValueError("outline_stream reads the outline maps' half of the features: give outline=True "
                             "(--outline) too")

    def __post_init__(self):
        if self.data in SCENES_NAMES[1:]:
            self.data = SCENES_NAMES[0]
        self.data = str(self.data)
        self.eval_splits = tuple(self.eval_splits)
        self.callbacks = tuple(self.callbacks)
        self.model_options = dict(self.model_options)
        self.validate()

    def validate(self):
        """Raises ValueError naming the first option that is out of range."""
        for name, low in (("epochs", 1), ("image_size", 32), ("batch_size", 1), ("num_images", 10),
                          ("min_word_count", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 1):
            raise ValueError(f"max_length must be None or an int >= 1, got {self.max_length!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        for field in dataclasses.fields(self):
            choices = field.metadata.get("choices")
            value = getattr(self, field.name)
            if choices and isinstance(value, str) and value not in choices:
                raise ValueError(f"unknown {field.name} {value!r}; expected one of {', '.join(choices)}")
        if self.backup_every is not None and self.backup_every < 0:
            raise ValueError(f"backup_every must be >= 0 or None, got {self.backup_every!r}")

    @classmethod
    def from_options(cls, config=None, **options):
        """A config from keyword options: fields set the config, anything else is a model option.

        Args:
            config: a config of this class to start from (None: the defaults).
            **options: field values, and sizes for the model builder (units=256, dropout=0.2).
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in options.items() if k in fields}
        extra = {k: v for k, v in options.items() if k not in fields}
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"config is a {type(config).__name__}; expected a {cls.__name__}")
        if extra:   # before the config is made, so that its validation sees them
            base = values.get("model_options", config.model_options if config is not None else {})
            values["model_options"] = dict(base, **extra)
        return cls(**values) if config is None else dataclasses.replace(config, **values)

    @classmethod
    def tiny(cls, **overrides):
        """The smoke-run setting: 40 scenes at 32 px, one epoch, small batches, silent."""
        settings = dict(epochs=1, image_size=32, num_images=40, batch_size=16, verbose=0,
                        eval_splits=("test",), backup_every=None)
        return cls.from_options(**dict(settings, **overrides))

    def record(self):
        """The options as config.json records them (JSON values; Python objects left out)."""
        out = {}
        for field in dataclasses.fields(self):
            if not field.metadata.get("record", True):
                continue
            value = getattr(self, field.name)
            if field.name == "strategy" and not isinstance(value, str):
                value = type(value).__name__
            if field.name == "outline":
                value = self.resolved_outline          # what the model was built with
            out[field.name] = list(value) if isinstance(value, tuple) else value
        return json.loads(json.dumps(out, default=str))


@dataclasses.dataclass
class CaptionerConfig(RunConfig):
    """`train_captioner`'s options: `RunConfig`'s and the captioner's own.

    The default feature layer is block3_pool (8x8x256 at 64 px): with the offline random weights
    each of its cells covers its own part of the image, so attention over them localises (the
    attention captioner's pointing game: 0.97 at block3_pool, 0.58 at block5_conv3, whose every
    cell sees the whole image); the LSTM captioner's learned region stage brings the grid down to
    4x4 before flattening it. With imagenet weights, use block5_conv3 at 224 px (14x14 cells).
    """

    model: str = option("lstm", "lstm: the document's VGG16 + LSTM; attention: an LSTM attending over the "
                        "VGG16 grid per word; transformer: a Transformer decoder over the grid",
                        flag="--model-type", choices=CAPTIONER_TYPES)
    fine_tune: bool = option(False, "train VGG16 too (slow on a CPU); else its features are cached once")
    bucket_by_length: bool = option(False, "batches of captions of one length, each cut to its longest caption: "
                                    "fewer padding positions to run (a third fewer on the scenes), a different "
                                    "batch order")
    checkpoint_metric: str = option("val_loss", "the epoch whose weights are kept: the lowest val_loss, or the "
                                    "highest val_cider_d (COCO CIDEr-D of greedy captions of the val split, "
                                    "as LAVIS selects)", choices=("val_loss", "val_cider_d"))

    outline: bool = option(None, "the encoder also reads each image's outline map (where the colour changes, in "
                           "grey), and the LSTM or attention captioner's region stage reads the outlines (shape "
                           "without colour) and its appearance stream the pixels (outline_stream and "
                           "region_appearance=32 unless given). Default: on for the LSTM and attention captioners, off "
                           "for the transformer")
    grounded_words: str = option(None, "the attention captioner reads its visual words from the attended region "
                                 "alone (GroundedWordLogits): 'scenes' (the synthetic scenes' colours, shapes and "
                                 "sizes) or groups of words, e.g. 'red,blue;circle,square'", parse=str)

    TASK: ClassVar[str] = "captioning"
    LEARNING_RATES: ClassVar[dict] = {"lstm": 3e-3, "attention": 3e-3, "transformer": 1e-3}

    @property
    def resolved_learning_rate(self):
        return self.learning_rate if self.learning_rate is not None else self.LEARNING_RATES[self.model]

    @property
    def default_outline(self):
        """On for the LSTM and attention captioners (better on both splits; README, the captioners'
        results); the Transformer's has not been measured."""
        return self.model in ("lstm", "attention")

    def validate(self):
        super().validate()
        self._check_outline_stream()
        if self.grounded_words is not None:
            if self.model != "attention":
                raise ValueError(f"grounded_words reads the visual words from the attended region: it needs "
                                 f"model='attention'; received model={self.model!r}")
            groups = parse_word_groups(self.grounded_words)
            if groups != "scenes" and not groups:
                raise ValueError(f"grounded_words {self.grounded_words!r} names no words; give 'scenes' or groups "
                                 "of words, e.g. 'red,blue;circle,square'")
        if self.bucket_by_length and self.fine_tune:
            raise ValueError("bucket_by_length batches cached features; it does not combine with fine_tune")


@dataclasses.dataclass
class VQAConfig(RunConfig):
    """`train_vqa`'s options: `RunConfig`'s and the VQA model's own.

    The default feature layer is VGG16's block2_pool (16x16x128 at 64 px): with the offline random
    weights, deeper blocks keep less of the shapes, and the head's own region convolutions learn
    what the questions need from this grid.
    """

    model: str = option("graph", "concat: the document's network; attention: the question attends "
                        "over the regions; graph (the default): question-conditioned message passing between "
                        "the regions, then the attention (section 2.3's graph fusion); question_only: the "
                        "blind baseline",
                        flag="--model-type", choices=VQA_TYPES)
    feature_layer: str = option("block2_pool", "the VGG16 layer whose grid the model reads",
                                choices=FEATURE_LAYERS)
    outline: bool = option(None, "the encoder also reads each image's outline map; the head's region convolutions "
                           "read the outlines (shape without colour) and its appearance stream the pixels "
                           "(region_appearance, 32 unless given). Default: on for the attention and graph heads "
                           "reading images, off for the others")
    learning_rate: float = option(2e-3, "Adam's learning rate at the first step (then a cosine decay)",
                                  parse=float)
    top_k_answers: int = option(1000, "the answer vocabulary keeps the most frequent answers")
    visual_input: str = option("image", "image: the model sees the pixels (VGG16, then regions); scene_graph: "
                               "it reads the annotated objects of the synthetic scenes instead (the "
                               "'ground-truth scene graph' oracle; no image encoder, no export)",
                               choices=("image", "scene_graph"))
    attribute_loss: float = option(0.0, "weight of the attribute probes' loss: linear probes read each region's "
                                   "colour and shape from the synthetic scenes' annotations while training "
                                   "(attention and graph heads; 0: none)", parse=float)
    grounding_loss: float = option(0.0, "weight of the word glimpses' grounding loss: glimpse k is taught where the "
                                   "k-th object the question names is, from the synthetic scenes' annotations "
                                   "(heads with word_glimpses; 0: none)", parse=float)
    questions: str = option(None, "VQA v2 questions files of a dataset in any other layout: FILE (the train "
                            "split) or SPLIT=FILE,..., with --images (and --annotations for the answers)",
                            parse=str)

    TASK: ClassVar[str] = "vqa"

    def validate(self):
        super().validate()
        if not self.attribute_loss >= 0:
            raise ValueError(f"attribute_loss must be >= 0, got {self.attribute_loss!r}")
        if not self.grounding_loss >= 0:
            raise ValueError(f"grounding_loss must be >= 0, got {self.grounding_loss!r}")
        if self.grounding_loss and not self.model_options.get("word_glimpses"):
            raise ValueError("grounding_loss teaches the word glimpses where the named objects are; give the head "
                             "some (word_glimpses=2)")
        if "outline_stream" in self.model_options:
            raise ValueError("outline_stream follows the encoder: give outline=True (--outline), not the option")
        if self.outline and self.visual_input != "image":
            raise ValueError(f"outline draws the images' outlines; visual_input={self.visual_input!r} reads no images")
        if self.resolved_outline and self.model_options.get("region_appearance", 1) == 0:
            raise ValueError("with outline the VQA head's region convolutions read the outlines and the colours come "
                             "from the appearance stream: region_appearance cannot be 0 (or give outline=False)")
        if self.attribute_loss and (self.model not in ("attention", "graph") or self.visual_input != "image"):
            raise ValueError("attribute_loss probes the regions the attention and graph heads read from images; "
                             f"model={self.model!r} with visual_input={self.visual_input!r} has none")

    @property
    def resolved_learning_rate(self):
        return self.learning_rate

    @property
    def default_outline(self):
        """On for the attention and graph heads reading images (better on the compositional split
        and with a quarter of the images; README, "Keeping colour and shape apart")."""
        return self.model in ("attention", "graph") and self.visual_input == "image"


@dataclasses.dataclass
class RetrievalConfig(RunConfig):
    """`train_retrieval`'s options: `RunConfig`'s and the dual encoder's own.

    The default feature layer is block3_pool (8x8x256 at 64 px): with random weights the deeper
    blocks keep less of the shapes (on the scenes, block5_conv3 reached image -> text R@1 0.40
    against 0.55). The batch is 256 because every other example of the global batch is a negative.
    """

    pooling: str = option("attention", "how the image tower pools the grid: attention over the regions and "
                          "their positions, flatten (every cell keeps its place), mean (a baseline)",
                          choices=IMAGE_POOLING)
    feature_layer: str = option("block3_pool", "the VGG16 layer whose grid the model reads",
                                choices=FEATURE_LAYERS)
    batch_size: int = option(256, "examples per replica; every other example of the global batch is a "
                             "negative")
    learning_rate: float = option(1e-3, "Adam's learning rate", parse=float)
    temperature: float = option(0.07, "the similarity's initial temperature (learned)")
    embed_dim: int = option(256, "size of the shared embedding space")
    outline: bool = option(None, "the encoder also reads each image's outline map (where the colour changes, in "
                           "grey), and the image tower's region convolutions read the outlines (shape without "
                           "colour) and its appearance stream the pixels (outline_stream and region_appearance=32 "
                           "unless given). Default: on for attention pooling, off for the others")
    hard_negatives: bool = option(None, "each training caption also brings a copy with two of its colours, shapes, "
                                  "sizes or places exchanged or one replaced (never writing a colour-shape pair the "
                                  "training captions lack), an extra wrong caption for every image of the batch. "
                                  "Default: on for the synthetic scenes, off for other data (unmeasured there)")
    bound_words: str = option(None, "the text tower's LSTM reads the caption with its attribute words replaced by "
                              "their group, and the words come back bound to the roles it gives their places: "
                              "'scenes' (the scenes' colours, shapes, sizes) or groups as 'red,blue;circle,square'",
                              parse=str)

    TASK: ClassVar[str] = "retrieval"

    @property
    def resolved_learning_rate(self):
        return self.learning_rate

    @property
    def default_outline(self):
        """On for attention pooling (better on both splits; README, retrieval's results)."""
        return self.pooling == "attention"

    def validate(self):
        super().validate()
        self._check_outline_stream()
        if self.bound_words is not None:
            groups = parse_word_groups(self.bound_words)
            if groups != "scenes" and not groups:
                raise ValueError(f"bound_words {self.bound_words!r} names no words; give 'scenes' or groups of "
                                 "words, e.g. 'red,blue;circle,square'")


TASK_CONFIGS = {"captioner": CaptionerConfig, "vqa": VQAConfig, "retrieval": RetrievalConfig}


def _model_option(text):
    """"units=256" -> ("units", 256); the value is read as JSON when it can be."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. units=256; got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_word_groups(text):
    """`CaptionerConfig.grounded_words` -> "scenes", or a list of word lists ("red,blue;circle" or
    [["red", "blue"], ["circle"]] -> [["red", "blue"], ["circle"]]); a word in two groups is a
    ValueError."""
    if isinstance(text, (list, tuple)) and all(isinstance(group, (list, tuple)) for group in text):
        parts = [[str(word) for word in group] for group in text]
    elif isinstance(text, str):
        if text.strip() == "scenes":
            return "scenes"
        parts = [part.split(",") for part in text.split(";")]
    else:
        raise ValueError(f"grounded_words must be 'scenes', a string of word groups ('red,blue;circle,square') or "
                         f"a list of lists of words; received {text!r}")
    groups = [[word.strip().lower() for word in part if word.strip()] for part in parts]
    groups = [group for group in groups if group]
    words = [word for group in groups for word in group]
    repeated = sorted({word for word in words if words.count(word) > 1})
    if repeated:
        raise ValueError(f"grounded_words {text!r} names {', '.join(repeated)} more than once; groups must be "
                         "disjoint")
    return groups


def check_model_options(builder, options, what, given=()):
    """Raises ValueError naming any of `options` that `builder` does not take as a keyword.

    Args:
        builder: the model builder the options are for.
        options: {name: value} sizes, e.g. {"units": 256}.
        what: how the error names the model, e.g. "the lstm captioner".
        given: the builder's arguments the trainer sets itself (not the user's to give).
    """
    accepted = [name for name, p in inspect.signature(builder).parameters.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in given]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for {what}; it takes "
                         f"{', '.join(accepted)}")


def add_arguments(parser, config_class, only=None, required=()):
    """Adds a flag to `parser` for each CLI field of `config_class` (or only those named).

    Defaults come from the dataclass, so `--help` shows the values the Python API uses.
    """
    for field in dataclasses.fields(config_class):
        meta = field.metadata
        if not meta.get("cli", True) or (only is not None and field.name not in only):
            continue
        flag = meta.get("flag") or "--" + field.name.replace("_", "-")
        if field.name == "model_options":
            parser.add_argument(flag, dest="model_options", action="append", type=_model_option,
                                default=[], metavar="KEY=VALUE", help=meta["help"])
            continue
        default = field.default
        kwargs = {"dest": field.name, "help": meta["help"]}
        if field.type in (bool, "bool") and meta.get("parse") is None:
            if default is False:
                parser.add_argument(flag, action="store_true", default=default, **kwargs)
            else:       # on, or chosen by the task, by default: --flag and --no-flag
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, **kwargs)
            continue
        kwargs["type"] = meta.get("parse") or (type(default) if default is not None else str)
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        if field.name in required:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
            shown = ",".join(default) if isinstance(default, tuple) else default
            kwargs["help"] += f" (default: {shown})" if shown is not None else ""
        parser.add_argument(flag, **kwargs)


def from_arguments(config_class, args):
    """The config that the parsed CLI arguments describe."""
    values = {}
    for field in dataclasses.fields(config_class):
        if hasattr(args, field.name) and field.metadata.get("cli", True):
            values[field.name] = getattr(args, field.name)
    values["model_options"] = dict(values.get("model_options") or [])
    return config_class(**values)
