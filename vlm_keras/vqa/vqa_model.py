"""`VQAModel`: a trained visual question answering model with its vocabularies.

It answers questions about images, evaluates with the official VQA accuracy, saves to / loads
from a model folder (`vlm_keras.bundle`) and exports a SavedModel. `train_vqa()` returns one.
"""

import numpy as np
import tensorflow as tf

from vlm_keras.bundle import ModelBundle
from vlm_keras.data.formats.vqa import write_vqa_results
from vlm_keras.data.sources import scenes_of, vqa_split_of
from vlm_keras.data.text import Tokenizer
from vlm_keras.encoders.features import extract_features
from vlm_keras.metrics import check_answer_counts, normalize_answer, vqa_accuracy_report
from vlm_keras.metrics.pointing import PointingScore, question_pointing
from vlm_keras.vqa.export import export_vqa
from vlm_keras.vqa.models import graph_edges_function, question_attention_model, reads_scene_graphs
from vlm_keras.vqa.scene_graphs import scene_graph_nodes, split_scene_graphs


def build_answer_vocabulary(answers_per_question, top_k=1000):
    """The `top_k` most frequent answers after the official normalisation.

    Args:
        answers_per_question: for each training question, its human answers (usually 10).
        top_k: vocabulary size; rarer answers are left out (questions whose answer is left out are
            not used for training).

    Returns:
        The answers, most frequent first (ties alphabetical).
    """
    counts = {}
    for answers in answers_per_question:
        for answer in answers:
            key = normalize_answer(answer)
            if key:
                counts[key] = counts.get(key, 0) + 1
    if not counts:
        raise ValueError("cannot build an answer vocabulary: no non-empty answers")
    return sorted(counts, key=lambda a: (-counts[a], a))[:top_k]


class VQAModel(ModelBundle):
    """A trained VQA model.

    A model trained with `visual_input="scene_graph"` (the oracle) reads the synthetic scenes'
    annotated objects instead of images: `evaluate` reads them from the dataset,
    `answer_scene_graphs` answers about given scenes, and what needs pixels (`answer`,
    `attention`, `pointing`, `export`) raises ValueError.

    Args:
        model: the end-to-end Keras model with sub-models "image_encoder" and "vqa_head" (only
            "vqa_head" for a scene-graph model).
        question_tokenizer: the `Tokenizer` for questions.
        answers: the answer vocabulary (class i is answers[i]).
        config, history, metrics, checkpoint_dir: as `ModelBundle`.
    """

    TASK = "vqa"

    def __init__(self, model, question_tokenizer, answers, config, history=None, metrics=None,
                 checkpoint_dir=None):
        super().__init__(model, config, history, metrics, checkpoint_dir)
        self.question_tokenizer = question_tokenizer
        self.answers = list(answers)
        self._attention_model = None
        self._graph_edges = None

    @property
    def head(self):
        return self.model.get_layer("vqa_head")

    @property
    def reads_scene_graphs(self):
        """True for a model trained on annotated scene graphs (`visual_input="scene_graph"`)."""
        return reads_scene_graphs(self.head)

    def encode_images(self, images, batch_size=32):
        if self.reads_scene_graphs:
            raise ValueError("this VQA model reads scene graphs (visual_input='scene_graph'), not images: "
                             "use answer_scene_graphs(scenes, questions), or evaluate() on the synthetic scenes")
        return super().encode_images(images, batch_size)

    def encode_questions(self, questions):
        """Question strings (N,) -> (N, max_length + 2) int32 token ids."""
        questions = list(questions)
        for i, q in enumerate(questions):
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"question #{i} is {q!r}; expected a non-empty string")
        return self.question_tokenizer.encode(tf.constant(questions, tf.string)).numpy()

    def answer_probabilities(self, features, questions, image_index=None, batch_size=256):
        """Encoder features (M, h, w, c) + N questions -> (N, num_answers) probabilities.

        `image_index[i]` says which feature row question i is about (default: row i).
        """
        logits = _per_question(self.head, features, self.encode_questions(questions), image_index, batch_size)
        return tf.nn.softmax(logits).numpy() if len(logits) else np.zeros((0, len(self.answers)), np.float32)

    def answer(self, images, questions, top_k=1):
        """Answers one question per image (images: paths, bytes or preprocessed arrays).

        Returns one dict per question: {"answer", "probability", "top_k": [[answer, p], ...]}.
        """
        images, questions = list(images) if not isinstance(images, np.ndarray) else images, list(questions)
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions; expected one question per image")
        return self._top_answers(self.answer_probabilities(self.encode_images(images), questions), top_k)

    def answer_scene_graphs(self, scenes, questions, top_k=1):
        """`answer` for a scene-graph model: one question per scene (`Scene`s or their dicts, as in
        `annotations/scenes_<split>.json`)."""
        if not self.reads_scene_graphs:
            raise ValueError("this VQA model reads images; answer_scene_graphs is for models trained with "
                             "visual_input='scene_graph'")
        scenes, questions = list(scenes), list(questions)
        if len(scenes) != len(questions):
            raise ValueError(f"{len(scenes)} scenes but {len(questions)} questions; expected one question per scene")
        return self._top_answers(self.answer_probabilities(scene_graph_nodes(scenes), questions), top_k)

    def _top_answers(self, probs, top_k):
        results = []
        for row in probs:
            order = np.argsort(-row)[:top_k]
            results.append({"answer": self.answers[order[0]], "probability": float(row[order[0]]),
                            "top_k": [[self.answers[i], float(row[i])] for i in order]})
        return results

    def attention(self, images, questions):
        """Where the question looked: (N, h, w) weights over the region grid, averaged over the
        glimpses the answer reads (the word glimpses too, in a head with them), each map summing to 1.

        Raises ValueError for heads without attention ("concat", "question_only")."""
        features = self.encode_images(list(images) if not isinstance(images, np.ndarray) else images)
        return self._attention_weights().predict([features, self.encode_questions(questions)], verbose=0)

    def attention_features(self, features, questions, image_index=None):
        """`attention` from encoder features (M, h, w, c): (N, h', w') maps, question i about
        feature row `image_index[i]` (default: row i), so a split's images are encoded once."""
        return _per_question(self._attention_weights(), features, self.encode_questions(questions), image_index)

    def graph_edges(self, images, questions):
        """The graph head's edges: (N, rounds, R, R) weights, row i of a round being how region i
        (row-major over the grid) weighed every region j for this question; ValueError for heads
        without graph rounds. `vlm_keras.visualize.plot_graph_edges` draws them."""
        features = self.encode_images(list(images) if not isinstance(images, np.ndarray) else images)
        return self.graph_edges_features(features, questions)

    def graph_edges_features(self, features, questions, image_index=None):
        """`graph_edges` from encoder features (or scene graph nodes), question i about row
        `image_index[i]` (default: row i)."""
        if self._graph_edges is None:
            self._graph_edges = graph_edges_function(self.head)          # ValueError without rounds
        edges = self._graph_edges
        return _per_question(lambda inputs, training: edges(*inputs), features, self.encode_questions(questions),
                             image_index)

    def _attention_weights(self):
        """The model giving the glimpse-averaged maps, built once (ValueError without attention)."""
        if self._attention_model is None:
            self._attention_model = question_attention_model(self.head)
        return self._attention_model

    def pointing(self, data="scenes", split="test", verbose=1, **data_kwargs):
        """The pointing game on a split of the synthetic scenes (`metrics.pointing`): for each
        question about one object, whether the maximum of the glimpse-averaged attention lies on it.

        Returns:
            {"pointing": hit rate, "pointing_uniform": a uniform map's rate on the same questions,
            "pointing_count": questions scored, "pointing_ambiguous": 0}.

        Raises:
            ValueError: for heads without attention ("concat", "question_only").
            DatasetError: when `data` is not the synthetic scenes.
        """
        self._attention_weights()      # no attention: say so before any work
        self._check_reads_images("the pointing game")
        scenes = scenes_of(data, split, verbose=bool(verbose), **data_kwargs)
        vqa_split = vqa_split_of(data, split, verbose=False, **data_kwargs)
        return self._pointing_score(vqa_split, scenes, *self._split_features(vqa_split, verbose))

    def _check_reads_images(self, what):
        if self.reads_scene_graphs:
            raise ValueError(f"{what} needs a model that reads images; this one reads scene graphs "
                             "(visual_input='scene_graph')")

    def _split_features(self, vqa_split, verbose, scenes=None):
        """(features of the split's distinct images, each question's row in them); for a
        scene-graph model, the nodes of the split's `scenes` ({image_id: Scene})."""
        if self.reads_scene_graphs:
            return split_scene_graphs(scenes, vqa_split.image_ids, vqa_split.name)
        unique_paths, image_index = np.unique(np.asarray(vqa_split.image_paths), return_inverse=True)
        features = extract_features(self.encoder, list(unique_paths), self.image_size,
                                    verbose=verbose, what=f"{vqa_split.name} images")
        return features, image_index

    def _pointing_score(self, vqa_split, scenes, features, image_index):
        maps = _per_question(self._attention_weights(), features, self.encode_questions(vqa_split.questions),
                             image_index)                                                   # (Q, h, w)
        score = PointingScore()
        for image_id, question, weights in zip(vqa_split.image_ids, vqa_split.questions, maps):
            question_pointing(question, weights, scenes[image_id], score)
        return score.report()

    def evaluate(self, data="scenes", split="test", predictions=None, verbose=1, pointing=False, **data_kwargs):
        """The official VQA accuracy on a split: overall, per question type and per answer type.

        Args:
            data: "scenes", a folder in a VQA layout (`data.layouts`), or a loaded `VQASplit`.
            split: the split's name.
            predictions: optional path for the answers in the VQA results format; checked before
                any work (never a file the evaluation reads).
            pointing: also play the pointing game (`pointing`) on the same features.
            **data_kwargs: num_images, seed, data_root; questions, annotations, images for files
                given explicitly (`data.sources.vqa_source`).

        Returns:
            `vqa_accuracy_report`'s dict; for questions without answers (VQA v2 test-dev) only
            {"num_questions", "scored": False}: the answers can be written (`predictions`), not scored.
            With `pointing`, `pointing`'s keys too.

        Raises:
            ValueError: for questions with neither 10 human answers nor 1 (`check_answer_counts`).
        """
        scenes = None
        if pointing:           # before any work: a head without attention, data without scenes
            self._attention_weights()
            self._check_reads_images("the pointing game")
            scenes = scenes_of(data, split, verbose=bool(verbose), **data_kwargs)
        if self.reads_scene_graphs:
            scenes = scenes_of(data, split, verbose=bool(verbose), purpose="a scene-graph VQA model",
                               **data_kwargs)
        vqa_split = vqa_split_of(data, split, verbose=bool(verbose), **data_kwargs)
        if vqa_split.has_answers:
            check_answer_counts(vqa_split.annotations)
        if predictions:
            self.check_predictions_path(predictions, vqa_split)
        features, image_index = self._split_features(vqa_split, verbose, scenes)
        probs = self.answer_probabilities(features, vqa_split.questions, image_index)
        answers = [self.answers[i] for i in np.argmax(probs, axis=1)]
        report = (vqa_accuracy_report(dict(zip(vqa_split.question_ids, answers)), vqa_split.annotations)
                  if vqa_split.has_answers else {"num_questions": len(answers), "scored": False})
        if pointing:
            report = dict(report, **self._pointing_score(vqa_split, scenes, features, image_index))
        if predictions:
            write_vqa_results(predictions, vqa_split.question_ids, answers)
        return report

    def _sizes(self):
        embedding = self.head.get_layer("answer_branch").get_layer("question_embedding")
        image = [] if self.reads_scene_graphs else super()._sizes()     # no image encoder to check
        return image + [("answers", len(self.answers), int(self.head.output_shape[-1])),
                        ("question vocabulary size", self.question_tokenizer.vocab_size, int(embedding.input_dim))]

    def _vocabularies(self):
        return {"question_tokenizer": self.question_tokenizer.get_config(), "answers": self.answers}

    @classmethod
    def _from_folder(cls, model, config, history, metrics):
        tokenizer = Tokenizer.from_config(config.pop("question_tokenizer"))
        answers = config.pop("answers")
        return cls(model, tokenizer, answers, config, history=history, metrics=metrics)

    def export(self, path, overwrite=True):
        """Exports a SavedModel: (image bytes, question) -> answer. See `export_vqa`."""
        self._check_reads_images("the SavedModel export (it serves image bytes)")
        return export_vqa(self, path, overwrite=overwrite)


def _per_question(model, features, tokens, image_index=None, batch_size=256):
    """`model([features[image_index[i]], tokens[i]])` for every question, a batch at a time, so the
    features are never copied once per question. `image_index` defaults to row i."""
    if image_index is None:
        image_index = np.arange(len(tokens))
    outputs = [model([tf.constant(features[image_index[start:start + batch_size]]),
                      tf.constant(tokens[start:start + batch_size])], training=False).numpy()
               for start in range(0, len(tokens), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)
