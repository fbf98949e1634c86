"""Scene graphs as the visual input (document section 2.1): the "oracle" VQA setting.

A VQA model normally sees pixels: VGG16, then the region encoder. The synthetic scenes also record
every object's colour, shape, size and position (`annotations/scenes_<split>.json`). With
`train_vqa(visual_input="scene_graph")` those annotations are the model's input instead: each image
becomes up to `MAX_NODES` nodes, one per annotated object, and the heads read them where they would
read regions (the graph head's message passing, the attention head's glimpses, the pooled vector).
What such a model scores is what a VQA paper reports "with ground-truth scene graphs": the answer
a head could give if perception were perfect, so the gap to the pixel model is what perception
costs.

A node is a vector of `NODE_FEATURES` numbers:

    | colour one-hot (6) | shape one-hot (4) | size one-hot (2) | row, column in -1..1 (2) | present (1) |

row and column follow `CoordinateChannels` (the centre of the image is 0, the top-left corner
(-1, -1)), so a node's position means what a region's does. Absent nodes (a scene of two objects
has two) are all zero, present flag included; the heads mask them out.
"""

import numpy as np

from vlm_keras.data.formats.reader import DatasetError
from vlm_keras.data.scenes.questions import named_objects
from vlm_keras.data.scenes.scenes import COLORS, MAX_OBJECTS, SHAPES, SIZES, Scene

MAX_NODES = MAX_OBJECTS
ATTRIBUTES = (tuple(COLORS), SHAPES, tuple(SIZES))
ATTRIBUTE_WIDTH = sum(len(values) for values in ATTRIBUTES)       # 12
NODE_FEATURES = ATTRIBUTE_WIDTH + 3                               # + row, column, present
POSITION_SLICE = slice(ATTRIBUTE_WIDTH, ATTRIBUTE_WIDTH + 2)
PRESENT_INDEX = ATTRIBUTE_WIDTH + 2


def scene_graph_nodes(scenes):
    """Scenes -> their nodes.

    Args:
        scenes: `Scene`s (or their `to_dict()` dicts), one per image.

    Returns:
        (M, MAX_NODES, NODE_FEATURES) float32: the objects in the order the scene lists them,
        then absent (all-zero) nodes.

    Raises:
        ValueError: naming the scene, when it has more than MAX_NODES objects.
    """
    scenes = _scenes(scenes)
    nodes = np.zeros((len(scenes), MAX_NODES, NODE_FEATURES), np.float32)
    for i, scene in enumerate(scenes):
        if len(scene.objects) > MAX_NODES:
            raise ValueError(f"scene #{i} has {len(scene.objects)} objects; a scene graph holds at most "
                             f"{MAX_NODES}")
        for j, obj in enumerate(scene.objects):
            offset = 0
            for values, value in zip(ATTRIBUTES, (obj.color, obj.shape, obj.size)):
                nodes[i, j, offset + values.index(value)] = 1.0
                offset += len(values)
            nodes[i, j, POSITION_SLICE] = (2.0 * obj.y - 1.0, 2.0 * obj.x - 1.0)   # row, column
            nodes[i, j, PRESENT_INDEX] = 1.0
    return nodes


def _scenes(scenes):
    """`Scene`s, from `Scene`s or their `to_dict()` dicts."""
    return [Scene.from_dict(scene) if isinstance(scene, dict) else scene for scene in scenes]


def split_scene_graphs(scenes, image_ids, split_name):
    """The nodes of a split's questions' images, each image once, as the VQA models read them.

    Args:
        scenes: the split's {image_id: Scene}.
        image_ids: the image id of each question (repeats allowed).
        split_name: for the error message.

    Returns:
        (nodes (M, MAX_NODES, NODE_FEATURES) of the M distinct images, sorted by id; the row of
        each question's image in them (len(image_ids),)).

    Raises:
        DatasetError: naming the split and the first image without a scene annotation.
    """
    unique_ids, image_index = np.unique(np.asarray(image_ids), return_inverse=True)
    return scene_graph_nodes(scenes_of_images(scenes, unique_ids.tolist(), split_name)), image_index


def scenes_of_images(scenes, image_ids, split_name, purpose=None):
    """The scenes of `image_ids`, in their order, from a split's {image_id: Scene}.

    Raises:
        DatasetError: naming the split, the first image without a scene annotation and, when
            given, `purpose` (what reads them).
    """
    image_ids = list(image_ids)
    missing = [image_id for image_id in image_ids if image_id not in scenes]
    if missing:
        why = f"; {purpose} reads the objects of every image" if purpose else ""
        raise DatasetError(f"split '{split_name}' has no scene annotation for image {missing[0]!r} "
                           f"({len(missing)} of {len(image_ids)} images without one){why}")
    return [scenes[image_id] for image_id in image_ids]


def region_attribute_maps(scenes, grid_shape):
    """Each region's colour and shape, from the scenes' annotations: the targets of the VQA
    heads' attribute probes (`build_grouped_trainer(attribute_loss=...)`).

    A region (a cell of the (h, w) grid over the image) takes the attributes of the object whose
    circle holds the cell's centre (the object drawn last where circles overlap), and the cell that
    holds an object's centre always takes that object's; other cells are background.

    Args:
        scenes: `Scene`s (or their dicts), one per image.
        grid_shape: (h, w), the region grid.

    Returns:
        (colours, shapes): (M, h, w) int32 each; 0 is background, i + 1 is `COLORS[i]` (or
        `SHAPES[i]`).
    """
    height, width = (int(n) for n in grid_shape)
    scenes = _scenes(scenes)
    colours = np.zeros((len(scenes), height, width), np.int32)
    shapes = np.zeros((len(scenes), height, width), np.int32)
    for i, scene in enumerate(scenes):
        for obj in scene.objects:
            inside = _cells_of(obj, height, width)
            colours[i][inside] = ATTRIBUTES[0].index(obj.color) + 1
            shapes[i][inside] = ATTRIBUTES[1].index(obj.shape) + 1
    return colours, shapes


def _cells_of(obj, height, width):
    """(h, w) bool: the cells of a grid over the image whose centre lies in `obj`'s circle, and
    always the cell that holds its centre."""
    rows, columns = (np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width
    inside = (rows[:, None] - obj.y) ** 2 + (columns[None, :] - obj.x) ** 2 <= obj.radius ** 2
    inside[min(int(obj.y * height), height - 1), min(int(obj.x * width), width - 1)] = True
    return inside


def referent_maps(scenes, questions, glimpses, grid_shape=None):
    """Where each question's named objects are: the targets of the word glimpses' grounding loss
    (`build_grouped_trainer(grounding_loss=...)`).

    Glimpse k's target is the k-th object the question names (`questions.named_objects`): "is the
    red circle left of the small square" sends glimpse 0 to the red circle and glimpse 1 to the
    small square; a glimpse past the names has no target.

    Args:
        scenes: each question's scene (`Scene`s or their dicts).
        questions: the questions' texts.
        glimpses: W, the head's word glimpses.
        grid_shape: (h, w), the head's region grid; None for a head that reads scene graphs.

    Returns:
        (N, W, R) float32: each row a distribution over the R regions (the object's cells, equally
        weighted) or nodes (the object's node), or all zero where the glimpse has no target.
    """
    scenes = _scenes(scenes)
    if len(scenes) != len(questions):
        raise ValueError(f"{len(scenes)} scenes and {len(questions)} questions; expected one scene per question")
    regions = MAX_NODES if grid_shape is None else int(grid_shape[0]) * int(grid_shape[1])
    maps = np.zeros((len(questions), int(glimpses), regions), np.float32)
    for i, (scene, question) in enumerate(zip(scenes, questions)):
        for k, obj in enumerate(named_objects(question, scene.objects)[:glimpses]):
            if grid_shape is None:
                maps[i, k, scene.objects.index(obj)] = 1.0
            else:
                cells = _cells_of(obj, *grid_shape).reshape(-1)
                maps[i, k] = cells / cells.sum()
    return maps
