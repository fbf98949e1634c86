import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# METEOR starts a Java VM (~10 s) in every caption evaluation; the tests that are about it ask for it.
os.environ.setdefault("VLM_KERAS_CAPTION_METRICS", "bleu,cider,rouge")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
    """A small scenes dataset (40 train/val/test images + compositional) shared by the tests."""
    from vlm_keras.data.scenes.dataset import write_scenes_dataset

    return write_scenes_dataset(tmp_path_factory.mktemp("data") / "shapes", num_images=40, seed=3,
                                progress=False)


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models") / "tiny"


@pytest.fixture(scope="session")
def tiny_captioner(shapes_dir, tiny_run_dir):
    """A small captioner trained for two epochs through the public train_captioner(out=...)."""
    from vlm_keras import train_captioner

    return train_captioner(data=str(shapes_dir), epochs=2, image_size=64, units=32, embed_dim=16,
                           num_layers=1, batch_size=32, seed=1, verbose=0, out=tiny_run_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_captioner, tiny_run_dir):
    """The model folder train_captioner(out=...) wrote, checkpoints included."""
    assert (tiny_run_dir / "checkpoints" / "best.weights.h5").is_file()
    return tiny_run_dir


@pytest.fixture(scope="session")
def tiny_retrieval(shapes_dir, tmp_path_factory):
    """A small dual encoder trained for two epochs through train_retrieval(out=...): (result, folder)."""
    from vlm_keras import train_retrieval

    out = tmp_path_factory.mktemp("retrieval") / "model"
    result = train_retrieval(data=str(shapes_dir), epochs=2, batch_size=32, seed=0, verbose=0, out=out,
                             embed_dim=16, hidden_dim=32, attention_dim=16, word_dim=8, units=16)
    return result, out


@pytest.fixture(scope="session")
def vqa_dir(shapes_dir):
    """`shapes_dir` with its VQA v2 questions."""
    from vlm_keras.data.scenes.dataset import write_vqa_dataset

    return write_vqa_dataset(shapes_dir)


@pytest.fixture(scope="session")
def trained_vqa(vqa_dir, tmp_path_factory):
    """A small attention VQA model trained for two epochs through train_vqa(out=...): (result, folder)."""
    from vlm_keras import train_vqa

    out = tmp_path_factory.mktemp("vqa") / "model"
    result = train_vqa(data=str(vqa_dir), model="attention", epochs=2, batch_size=32, seed=0, verbose=0,
                       out=out, embed_dim=8, units=16, fusion_dim=32, attention_dim=16)
    return result, out
