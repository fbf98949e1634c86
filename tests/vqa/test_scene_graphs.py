"""Scene graphs as the visual input (the oracle setting): the nodes, the heads over them (masking,
node order), a tiny model that must learn a relation, and train_vqa -> folder -> evaluate."""

import keras
import numpy as np
import pytest

from vlm_keras.data.formats.reader import DatasetError
from vlm_keras.data.scenes.scenes import Scene, SceneObject
from vlm_keras.vqa import VQAModel
from vlm_keras.vqa.models import build_vqa_head, graph_edges_function, question_attention_model
from vlm_keras.vqa.scene_graphs import (MAX_NODES, NODE_FEATURES, scene_graph_nodes, scenes_of_images,
                                       split_scene_graphs)

SMALL = dict(embed_dim=8, units=16, fusion_dim=16, attention_dim=16, graph_units=8)


def _scene(*objects):
    return Scene(tuple(SceneObject(*o) for o in objects), (80, 80, 80))


def test_a_scene_becomes_one_node_per_object_then_absent_nodes():
    nodes = scene_graph_nodes([_scene(("blue", "square", "large", 0.25, 0.75, 0.2)),
                               _scene(("red", "circle", "small", 0.5, 0.5, 0.1),
                                      ("orange", "cross", "small", 1.0, 0.0, 0.1)).to_dict()])
    assert nodes.shape == (2, MAX_NODES, NODE_FEATURES) == (2, 4, 15)
    # colours red green blue yellow purple orange | circle square triangle cross | small large
    # | row = 2y - 1, column = 2x - 1 | present
    np.testing.assert_array_equal(nodes[0, 0], [0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0.5, -0.5, 1])
    np.testing.assert_array_equal(nodes[1, 1], [0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, -1, 1, 1])
    assert not nodes[0, 1:].any() and not nodes[1, 2:].any()


def test_too_many_objects_and_a_missing_annotation_are_named():
    crowded = _scene(*[("red", "circle", "small", 0.1 * i, 0.5, 0.05) for i in range(1, 6)])
    with pytest.raises(ValueError, match="scene #0 has 5 objects"):
        scene_graph_nodes([crowded])
    with pytest.raises(ValueError, match="split 'test' has no scene annotation for image 7"):
        split_scene_graphs({3: crowded}, [7], "test")
    with pytest.raises(DatasetError, match=r"split 'val' has no scene annotation for image 9 \(1 of 2 images "
                                           r"without one\); attribute_loss reads the objects of every image"):
        scenes_of_images({3: crowded}, [3, 9], "val", purpose="attribute_loss")
    assert scenes_of_images({3: crowded, 4: None}, [3], "val") == [crowded]


@pytest.mark.parametrize("model_type", ["attention", "graph"])
def test_absent_nodes_and_the_order_of_present_ones_do_not_change_the_answer(model_type):
    keras.utils.set_random_seed(0)
    head = build_vqa_head(model_type, 10, 3, (MAX_NODES, NODE_FEATURES), **SMALL)
    rng = np.random.default_rng(0)
    nodes = np.zeros((3, MAX_NODES, NODE_FEATURES), "float32")
    nodes[:, :2] = rng.uniform(-1, 1, size=(3, 2, NODE_FEATURES))
    nodes[:, :2, -1] = 1.0                                        # two objects per scene
    tokens = rng.integers(2, 10, size=(3, 5)).astype("int32")
    logits = head([nodes, tokens])
    noisy = nodes.copy()
    noisy[:, 2:, :-1] = rng.normal(size=(3, 2, NODE_FEATURES - 1))  # garbage in absent nodes
    np.testing.assert_allclose(head([noisy, tokens]), logits, atol=1e-5)
    np.testing.assert_allclose(head([nodes[:, [1, 3, 0, 2]], tokens]), logits, atol=1e-5)
    weights = np.asarray(question_attention_model(head)([nodes, tokens]))          # (B, N)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
    assert not weights[:, 2:].any()
    if model_type == "graph":
        edges = np.asarray(graph_edges_function(head)(nodes, tokens))               # (B, rounds, N, N)
        assert edges.shape == (3, 2, MAX_NODES, MAX_NODES)
        np.testing.assert_allclose(edges[:, :, :2].sum(-1), 1.0, atol=1e-5)      # present nodes' rows
        assert not edges[..., 2:].any()                                            # nothing from absent ones
    else:
        with pytest.raises(ValueError, match="has no graph rounds"):
            graph_edges_function(head)


def test_a_tiny_graph_model_learns_left_of_from_scene_graphs():
    """"Is the red object left of the blue one" over two-object scene graphs: the graph head must
    learn it (chance is 0.5)."""
    def scenes(n, seed):
        rng = np.random.default_rng(seed)
        out, answers = [], []
        for _ in range(n):
            x_red, x_blue = rng.choice(np.linspace(0.1, 0.9, 9), size=2, replace=False)
            pair = [("red", "circle", "small", x_red, rng.uniform(0.1, 0.9), 0.1),
                    ("blue", "square", "small", x_blue, rng.uniform(0.1, 0.9), 0.1)]
            out.append(_scene(*(pair if rng.random() < 0.5 else pair[::-1])))
            answers.append(int(x_red < x_blue))
        return scene_graph_nodes(out), np.array(answers)

    keras.utils.set_random_seed(0)
    nodes, answers = scenes(512, 0)
    test_nodes, test_answers = scenes(256, 1)
    tokens = np.tile([[2, 5, 6, 7, 3]], (512, 1))
    head = build_vqa_head("graph", 10, 2, (MAX_NODES, NODE_FEATURES), **SMALL)
    head.compile(optimizer=keras.optimizers.Adam(3e-3),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    head.fit([nodes, tokens], answers, epochs=30, batch_size=32, verbose=0)
    accuracy = head.evaluate([test_nodes, tokens[:256]], test_answers, verbose=0)[1]
    assert accuracy >= 0.9, accuracy


@pytest.fixture(scope="module")
def trained_oracle(vqa_dir, tmp_path_factory):
    from vlm_keras import train_vqa

    out = tmp_path_factory.mktemp("oracle") / "model"
    result = train_vqa(data=str(vqa_dir), model="graph", visual_input="scene_graph", epochs=2, batch_size=32,
                       seed=0, verbose=0, out=out, **SMALL)
    return result, out


def test_train_vqa_on_scene_graphs_saves_loads_and_evaluates(trained_oracle, vqa_dir):
    from vlm_keras.data.scenes.dataset import load_scenes

    result, out = trained_oracle
    assert result.reads_scene_graphs and result.config["visual_input"] == "scene_graph"
    assert 0.0 <= result.metrics["accuracy_test"] <= 1.0
    assert "image_encoder" not in [layer.name for layer in result.model.layers]
    loaded = VQAModel.load(out)
    assert loaded.evaluate(str(vqa_dir), "test", verbose=0)["overall"] == pytest.approx(
        result.metrics["accuracy_test"])
    scenes = list(load_scenes(vqa_dir, "test").values())[:2]
    expected = result.answer_scene_graphs(scenes, ["how many objects are there", "what color is the circle"])
    got = loaded.answer_scene_graphs(scenes, ["how many objects are there", "what color is the circle"])
    assert [g["answer"] for g in got] == [e["answer"] for e in expected]


def test_what_needs_pixels_says_the_model_reads_scene_graphs(trained_oracle, vqa_dir, tmp_path, capsys):
    from vlm_keras.cli import main
    from vlm_keras.data.formats.vqa import load_vqa_split

    result, out = trained_oracle
    image = load_vqa_split(vqa_dir, "test").image_paths[0]
    assert main(["ask", "--model", str(out), image, "what color is the circle"]) == 2
    assert "reads scene graphs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="reads scene graphs"):
        result.answer([str(tmp_path / "x.png")], ["what color is it"])
    with pytest.raises(ValueError, match="reads scene graphs"):
        result.export(tmp_path / "export")
    with pytest.raises(ValueError, match="reads scene graphs"):
        result.pointing(str(vqa_dir), "test", verbose=0)
    assert not (tmp_path / "export").exists()


def test_scene_graphs_need_the_scene_annotations(vqa_dir, tmp_path):
    import shutil

    from vlm_keras import train_vqa

    data = shutil.copytree(vqa_dir, tmp_path / "no_scenes")
    for path in (data / "annotations").glob("scenes_*.json"):
        path.unlink()
    with pytest.raises(DatasetError, match="no scene annotations for split 'train'.*visual_input='scene_graph'"):
        train_vqa(data=str(data), visual_input="scene_graph", epochs=1, verbose=0)
