"""The one place that chooses a `tf.distribute` strategy and prepares training for it.

Every `train_*` function goes through `get_strategy`, `global_batch_size`, `shard_by_data` and
`fit_context`; nothing else in the package creates a strategy.
"""

import contextlib
import json
import os

from vlm_keras.errors import VlmKerasError

# TensorFlow is imported inside the functions: the CLI reads STRATEGIES without paying for it.
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


def cluster_spec_from_env():
    """The cluster named by the `TF_CONFIG` environment variable, or {} when there is none.

    Raises ValueError when `TF_CONFIG` is set but is not the JSON TensorFlow expects."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}); expected "
                         '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
                         ) from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster", {}), dict):
        raise ValueError("TF_CONFIG must be a JSON object with a 'cluster' object")
    return config.get("cluster", {})


def _cluster_size(cluster):
    return sum(len(hosts) for job, hosts in cluster.items() if job in ("chief", "worker"))


def resolve_strategy_name(strategy="auto"):
    """The strategy name "auto" (or None) stands for here and now; other names are checked and kept."""
    if strategy is None:
        strategy = "auto"
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if strategy != "auto":
        return strategy
    if _cluster_size(cluster_spec_from_env()) >= 2:
        return "multi_worker"
    import tensorflow as tf

    return "mirrored" if len(tf.config.list_logical_devices("GPU")) >= 2 else "default"


def get_strategy(strategy="auto"):
    """Returns a `tf.distribute.Strategy`.

    Args:
        strategy: an existing `tf.distribute.Strategy` (returned as is), or one of
            "auto": `MultiWorkerMirroredStrategy` when `TF_CONFIG` names a cluster of two or more
                workers, else `MirroredStrategy` when two or more GPUs are visible, else the default;
            "default": the default strategy (one device, no replication);
            "one_device": `OneDeviceStrategy` on the first GPU, or the CPU without one;
            "mirrored": `MirroredStrategy` over every visible GPU (the CPU without one);
            "multi_worker": `MultiWorkerMirroredStrategy`; the cluster comes from `TF_CONFIG`;
            "tpu": `TPUStrategy` on the TPU found by `TPUClusterResolver` (Colab, Cloud TPU VMs).
    """
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    strategy = resolve_strategy_name(strategy)
    if strategy == "default":
        return tf.distribute.get_strategy()
    if strategy == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy == "multi_worker":
        cluster_spec_from_env()  # a malformed TF_CONFIG fails here with a readable message
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise ValueError(f"strategy 'tpu' found no TPU ({e})") from None
    return tf.distribute.TPUStrategy(resolver)


def global_batch_size(batch_size, strategy):
    """The batch one step consumes: `batch_size` examples per replica times the replicas."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return batch_size * strategy.num_replicas_in_sync


def shard_by_data(dataset):
    """Marks an in-memory dataset to be split by element across workers.

    The default AUTO policy looks for files to shard, finds none in our cached-feature datasets,
    and falls back to DATA with a warning; saying DATA outright keeps every worker's share
    disjoint and the logs quiet. One device ignores the option."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def is_multi_worker(strategy):
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
    """True on the worker that writes the model folder: the only one, the chief, or worker 0."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0


# --- keras-team/keras#20585 ---------------------------------------------------------------------
# Keras 3's TensorFlow trainer cannot `fit` under MultiWorkerMirroredStrategy:
#  1. `_maybe_symbolic_build` averages the first batch across workers with an eager
#     `strategy.reduce`, which the collective all-reduce cannot do on a PerReplica of inputs
#     ("Attempt to convert a value (PerReplica ...) ... to a Tensor");
#  2. `reduce_per_replica(..., "auto")` reduces the step's scalar logs with axis=0 on multi-worker
#     strategies ("Invalid reduction dimension 0 for input with 0 dimensions").
# `fit_context` works around both for the duration of one `fit`, on one model, and only under
# MultiWorkerMirroredStrategy; Keras is never patched at import time. tests/test_distribute.py
# runs plain Keras under the strategy and fails once upstream fixes it, so this can go.

def _symbolic_build_from_first_replica(model, strategy):
    import tensorflow as tf

    keras_build = model._maybe_symbolic_build

    def build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                batch = next(batches)
                break
            # Building needs shapes, not a cross-worker mean: any replica's batch will do.
            data_batch = tf.nest.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues) else v, batch)
        return keras_build(data_batch=data_batch)

    return build


def _reduce_scalars_across_workers(keras_reduce):
    import tensorflow as tf

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and is_multi_worker(strategy):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None)
                if isinstance(v, tf.distribute.DistributedValues) else v, values)
        return keras_reduce(values, strategy, reduction)

    return reduce_per_replica


# What the workaround replaces. setup.cfg pins Keras to the versions the tests passed on; a Keras
# without these names fails here, naming them, instead of training wrongly.
PATCHED_KERAS_FUNCTIONS = ("keras.src.backend.tensorflow.trainer.reduce_per_replica",
                           "keras.Model._maybe_symbolic_build")


class KerasVersionError(VlmKerasError, RuntimeError):
    """This Keras changed a private function the multi-worker workaround replaces."""


def check_keras_internals():
    """Raises KerasVersionError (a RuntimeError) naming the private Keras function the multi-worker workaround needs
    and this Keras lacks (or whose signature changed)."""
    import inspect

    import keras

    try:
        from keras.src.backend.tensorflow import trainer as keras_tf_trainer
    except ImportError as error:
        raise KerasVersionError(f"Keras {keras.__version__} has no keras.src.backend.tensorflow.trainer ({error}); "
                           "vlm_keras.distribute.fit_context (keras-team/keras#20585) needs updating") from None
    checks = {PATCHED_KERAS_FUNCTIONS[0]: (getattr(keras_tf_trainer, "reduce_per_replica", None),
                                           ["values", "strategy", "reduction"]),
              PATCHED_KERAS_FUNCTIONS[1]: (getattr(keras.Model, "_maybe_symbolic_build", None),
                                           ["self", "iterator", "data_batch"])}
    for name, (function, parameters) in checks.items():
        if function is None or list(inspect.signature(function).parameters) != parameters:
            raise KerasVersionError(f"Keras {keras.__version__} changed the private function {name} "
                               f"(expected parameters {parameters}); vlm_keras.distribute.fit_context, the "
                               "workaround for keras-team/keras#20585, needs updating")
    return keras_tf_trainer


@contextlib.contextmanager
def fit_context(model, strategy):
    """Wrap `model.fit(...)` in this: a no-op except under MultiWorkerMirroredStrategy (see above)."""
    if not is_multi_worker(strategy):
        yield
        return
    keras_tf_trainer = check_keras_internals()
    keras_reduce = keras_tf_trainer.reduce_per_replica
    model._maybe_symbolic_build = _symbolic_build_from_first_replica(model, strategy)
    keras_tf_trainer.reduce_per_replica = _reduce_scalars_across_workers(keras_reduce)
    try:
        yield
    finally:
        keras_tf_trainer.reduce_per_replica = keras_reduce
        del model._maybe_symbolic_build  # the class's method again
