"""The scenes dataset as a TFDS builder: `tfds.load("vlm_scenes")` works offline.

```python
import vlm_keras.data.scenes.tfds     # registers "vlm_scenes" with TFDS
import numpy as np
import tensorflow_datasets as tfds
from etils import epath
train = tfds.load("vlm_scenes/small", split="train", data_dir="~/tensorflow_datasets")
```

Importing this module registers the builder: TFDS registers every `GeneratorBasedBuilder`
subclass when its class is defined, so no import hook is needed (`vlm_keras.data.tfds` imports
it before building any dataset; the command `tfds build` takes `--imports
vlm_keras.data.scenes.tfds`).

Nothing is downloaded: `_split_generators` renders the scenes with `write_scenes_dataset` and
their questions with `write_vqa_dataset` into the download folder (`<data_dir>/downloads/`), and
`_generate_examples` reads them back through the COCO and VQA v2 loaders, so an example holds
exactly what the "scenes" folder of the same settings holds. One example per image:

    image         (S, S, 3) uint8, PNG
    image_id      int64, unique across splits
    captions      5 reference captions
    questions     {question_id, question, question_type, answer_type,
                   answers (10 human answers), multiple_choice_answer}, one entry per question

Splits: train, val, test (80/10/10 of `num_images`) and compositional (as many as test), whose
images each hold a colour-shape pair never seen in the other splits.
"""

import collections
import dataclasses
import pathlib

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from vlm_keras.data.formats.coco import load_caption_split
from vlm_keras.data.formats.vqa import load_vqa_split
from vlm_keras.data.scenes.dataset import write_scenes_dataset, write_vqa_dataset
from vlm_keras.data.scenes.scenes import DATASET_VERSION, SPLITS

_DESCRIPTION = """vlm_keras's synthetic scenes: 1-4 coloured shapes on a tinted background, five
reference captions per image (COCO captions layout) and questions with ten human answers each
(VQA v2 format). The compositional split's images each hold a colour-shape pair (red triangle,
green circle, blue cross, yellow square) that never occurs in train, val or test."""


@dataclasses.dataclass(eq=False)
class VlmScenesConfig(tfds.core.BuilderConfig):
    """A size and resolution of the scenes dataset.

    Args:
        name: the config name, as in "vlm_scenes/<name>".
        num_images: train + val + test images (>= 10); compositional adds as many as test.
        image_size: side of the square PNG images in pixels (>= 16).
        seed: the scenes generator's seed (and the questions').
        questions_per_image: questions asked about each image, 1 to 99.
    """

    num_images: int = 6000
    image_size: int = 64
    seed: int = 0
    questions_per_image: int = 6


class VlmScenes(tfds.core.GeneratorBasedBuilder):
    """Synthetic scenes of coloured shapes with captions and VQA v2 questions, rendered offline."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": f"Initial release: scenes dataset version {DATASET_VERSION}, captions and "
                 "VQA v2 questions, splits train/val/test/compositional.",
    }
    BUILDER_CONFIGS = [
        # "tiny" is for smoke runs: seconds to build and to train on.
        VlmScenesConfig(name="tiny", description="40 images + 4 compositional, 32 px",
                        num_images=40, image_size=32),
        VlmScenesConfig(name="small", description="600 images + 60 compositional, 64 px",
                        num_images=600, image_size=64),
        VlmScenesConfig(name="6k_64", description="6,000 images + 600 compositional, 64 px",
                        num_images=6000, image_size=64),
        # The same images, captions and questions as train_*(data="shapes").
        VlmScenesConfig(name="6k_128", description="6,000 images + 600 compositional, 128 px",
                        num_images=6000, image_size=128),
    ]
    DEFAULT_CONFIG_NAME = "6k_64"

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        # The path TFDS would compute, without TFDS's own lookup, which imports the third-party
        # `importlib_resources` that tensorflow-datasets 4.9.x does not declare on Python >= 3.9
        # (tensorflow/datasets#11212): "No module named 'importlib_resources'" on building.
        return epath.Path(__file__)

    def _info(self):
        size = self.builder_config.image_size
        text = tfds.features.Text()
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
                "image_id": tfds.features.Scalar(dtype=np.int64),
                "captions": tfds.features.Sequence(text),
                "questions": tfds.features.Sequence({
                    "question_id": tfds.features.Scalar(dtype=np.int64),
                    "question": text,
                    "question_type": text,
                    "answer_type": text,
                    # 10 per question; a fixed length inside a Sequence cannot be read back
                    # (tfds 4.9's parser expects ragged row lengths where it wrote none).
                    "answers": tfds.features.Sequence(text),
                    "multiple_choice_answer": text,
                }),
            }),
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        # The rendered files stand in for a download: kept, and reused by a rerun.
        scenes_dir = pathlib.Path(dl_manager.download_dir) / (
            f"vlm_scenes-n{config.num_images}-px{config.image_size}-seed{config.seed}"
            f"-q{config.questions_per_image}")
        write_scenes_dataset(scenes_dir, num_images=config.num_images, seed=config.seed,
                             image_size=config.image_size)  # a progress line per 10%
        write_vqa_dataset(scenes_dir, seed=config.seed,
                          questions_per_image=config.questions_per_image)
        return {split: self._generate_examples(scenes_dir, split) for split in SPLITS}

    def _generate_examples(self, scenes_dir, split):
        captions = load_caption_split(scenes_dir, split, check_images=False)
        vqa = load_vqa_split(scenes_dir, split, check_images=False)
        questions = collections.defaultdict(list)
        for index, image_id in enumerate(vqa.image_ids):
            questions[image_id].append({
                "question_id": vqa.question_ids[index],
                "question": vqa.questions[index],
                "question_type": vqa.question_types[index],
                "answer_type": vqa.answer_types[index],
                "answers": vqa.answers[index],
                "multiple_choice_answer": vqa.multiple_choice_answers[index],
            })
        for image_id, path, references in zip(captions.image_ids, captions.image_paths,
                                              captions.captions):
            yield image_id, {"image": path, "image_id": image_id, "captions": references,
                             "questions": questions[image_id]}
