"""Where colour and shape come apart: linear probes of each object's colour and shape, trained on the
training images' objects, scored on the compositional split's objects of held-out colour-shape pairs.

    python benchmarks/attribute_probes.py [--data DIR] [--train-images 2000] [--model RUN_DIR ...]

Each object is read at the frozen grid cell that holds its centre, with the cells around it (a
5x5 window of VGG16 block2_pool at 64 px: 16x16 cells of 4 px) from:
- "pixels": the frozen features of the image (what every head reads);
- "outlines": the frozen features of its outline map (`OutlineImage`: where the colour changes,
  in grey; `build_image_encoder(outline=True)`'s second half);
- each `--model`: the region vectors its trained VQA head attends over (the region of the centre).
A probe is a linear softmax (Adam, 30 epochs) on standardised features. A probe that reads the
shape of a red triangle right, having seen triangles only in other colours, reads a shape that
does not depend on the colour. The same random VGG16 (seed 0) makes both grids; a model's regions
come from its own encoder.
"""

import argparse
import os
import pathlib

import numpy as np

WINDOW = 5


def objects(images_dir, scenes, image_ids):
    """[(image path, (row, column) of its centre in 0..1, colour id, shape id, held-out pair?)]."""
    from vlm_keras.data.scenes.scenes import HELDOUT_PAIRS
    from vlm_keras.vqa.scene_graphs import ATTRIBUTES

    return [(str(images_dir / f"{int(i):012d}.png"), (obj.y, obj.x), ATTRIBUTES[0].index(obj.color),
             ATTRIBUTES[1].index(obj.shape), (obj.color, obj.shape) in HELDOUT_PAIRS)
            for i in image_ids for obj in scenes[i].objects]


def windows(grid, items, paths):
    """(M, h, w, c) grids of `paths` -> (objects, WINDOW * WINDOW * c): each object's window."""
    index = {p: k for k, p in enumerate(paths)}
    pad = WINDOW // 2
    padded = np.pad(grid, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows = []
    for path, centre, *_ in items:
        r, c = centre_cell(centre, grid.shape[1:3])
        rows.append(padded[index[path], r:r + WINDOW, c:c + WINDOW].reshape(-1))
    return np.stack(rows)


def centre_cell(centre, grid_shape):
    """(row, column) of the cell of an (h, w) grid that holds a centre given in 0..1 (as
    `scene_graphs.region_attribute_maps` places an object)."""
    (y, x), (height, width) = centre, grid_shape
    return min(int(y * height), height - 1), min(int(x * width), width - 1)


def centre_regions(regions, grid_shape, items, paths):
    """(M, R, A) region vectors -> (objects, A): the region of each object's centre."""
    index = {p: k for k, p in enumerate(paths)}
    cells = [centre_cell(centre, grid_shape) for _, centre, *_ in items]
    return np.stack([regions[index[item[0]], r * grid_shape[1] + c] for item, (r, c) in zip(items, cells)])


def probe(train_x, train_y, test_x, classes, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    mean, sd = train_x.mean(0), train_x.std(0) + 1e-6
    model = keras.Sequential([keras.Input((train_x.shape[1],)), keras.layers.Dense(classes)])
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit((train_x - mean) / sd, train_y, epochs=30, batch_size=256, verbose=0)
    return model.predict((test_x - mean) / sd, verbose=0).argmax(-1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.path.expanduser("~/.cache/vlm_keras/datasets/scenes-n12000-seed0"))
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--model", action="append", default=[], help="a trained VQA model's folder (repeatable)")
    args = parser.parse_args()

    import keras

    from vlm_keras.data.scenes.dataset import load_scenes
    from vlm_keras.encoders.features import load_images
    from vlm_keras.encoders.regions import region_grid_shape
    from vlm_keras.encoders.vgg16 import build_image_encoder
    from vlm_keras.vqa import VQAModel
    from vlm_keras.vqa.scene_graphs import ATTRIBUTES

    data = pathlib.Path(args.data)
    split_items, split_paths = {}, {}
    for split, limit in (("train", args.train_images), ("compositional", args.test_images)):
        scenes = load_scenes(data, split)
        split_items[split] = objects(data / split, scenes, sorted(scenes)[:limit])
        split_paths[split] = sorted({item[0] for item in split_items[split]})
    train, test = split_items["train"], split_items["compositional"]
    heldout = np.array([item[4] for item in test])
    print(f"{len(train)} training objects ({args.train_images} images); {len(test)} compositional objects, "
          f"{heldout.sum()} of a held-out pair")

    keras.utils.set_random_seed(0)
    encoder = build_image_encoder(64, feature_layer="block2_pool", outline=True)
    features = {split: encoder.predict(load_images(paths, 64), batch_size=64, verbose=0)
                for split, paths in split_paths.items()}
    half = encoder.output_shape[-1] // 2
    readings = {"pixels": {s: windows(f[..., :half], split_items[s], split_paths[s]) for s, f in features.items()},
                "outlines": {s: windows(f[..., half:], split_items[s], split_paths[s]) for s, f in features.items()}}
    for folder in args.model:
        model = VQAModel.load(folder)
        branch = model.head.get_layer("image_branch")
        readings[f"regions of {folder}"] = {
            s: centre_regions(branch.predict(model.encode_images(split_paths[s]), batch_size=128, verbose=0)[1],
                              region_grid_shape(model.head), split_items[s], split_paths[s]) for s in split_items}

    print("| read from | colour: seen pairs | colour: held-out pairs | shape: seen pairs | shape: held-out pairs |")
    print("|---|---|---|---|---|")
    for name, reading in readings.items():
        cells = []
        for attribute, column in (("colour", 2), ("shape", 3)):
            labels = np.array([item[column] for item in train]), np.array([item[column] for item in test])
            said = probe(reading["train"], labels[0], reading["compositional"], len(ATTRIBUTES[column - 2]))
            right = said == labels[1]
            cells += [f"{right[~heldout].mean():.3f}", f"{right[heldout].mean():.3f}"]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
