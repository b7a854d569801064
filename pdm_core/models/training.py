"""Training of the candidate components: TensorFlow/Keras networks and scikit-learn baselines.

Every trainer takes ``(data, params, on_epoch)`` (:data:`Trainer`). Seeds are fixed and
TensorFlow runs with deterministic ops, so training on CPU is reproducible. Trainings report
every epoch or boosting iteration through ``on_epoch`` (the assets forward it to the Dagster
log and to MLflow step metrics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from pdm_core.models.data import ModelData, SplitData, Standardizer, TrainingDataError
from pdm_core.models.trained import TrainedModel

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called with the epoch (or boosting iteration) number and its metrics."""
Trainer = Callable[["ModelData", "TrainingParams", "EpochCallback | None"], TrainedModel]
"""What every ``train_*`` function here is."""


@dataclass(frozen=True)
class TrainingParams:
    """Hyperparameters shared by the candidates (defaults are the documented ones).

    Attributes:
        seed: Random seed (numpy, Python, TensorFlow).
        epochs: Maximum epochs of the networks.
        batch_size: Mini-batch size.
        learning_rate: Adam learning rate.
        patience: Early-stopping patience in epochs.
        hidden: Hidden layer widths of the classifier and regressor networks.
        dropout: Dropout after the first hidden layer.
        rul_cap: RUL target cap (piecewise-linear target), readings.
        anomaly_quantile: Quantile of healthy validation errors used as alert threshold.
        healthy_margin: Readings with rul > healthy_margin x horizon count as healthy for the
            autoencoder (all readings without a failure label when RUL is unknown).
        boosting_iterations: Maximum iterations of the gradient-boosting baselines.
        horizon: The data's label horizon in readings (``failure_within_h``); the source
            sets it, and it is what ``healthy_margin`` multiplies.
    """

    seed: int = 42
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 1e-3
    patience: int = 6
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.3
    rul_cap: float = 125.0
    anomaly_quantile: float = 0.99
    healthy_margin: float = 3.0
    boosting_iterations: int = 300
    horizon: int = 30

    def to_dict(self) -> dict[str, Any]:
        """Flat dict for MLflow params."""
        out = asdict(self)
        out["hidden"] = ",".join(str(h) for h in self.hidden)
        return out


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _epoch_callback(on_epoch: EpochCallback | None) -> Any:
    import keras

    class _Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if on_epoch is not None:
                on_epoch(epoch, {k: float(v) for k, v in (logs or {}).items()})

    return _Report()


def _boosting_history(model: Any, on_epoch: EpochCallback | None) -> dict[str, list[float]]:
    """A fitted gradient-boosting model's validation score per iteration, also reported.

    scikit-learn fits the whole model in one call, so iterations are reported once it ends.
    """
    scores = [float(s) for s in model.validation_score_]
    if on_epoch is not None:
        for iteration, score in enumerate(scores):
            on_epoch(iteration, {"validation_score": score})
    return {"validation_score": scores}


def _mlp(inputs: int, hidden: tuple[int, ...], dropout: float, output: str) -> Any:
    import keras

    layers: list[Any] = [keras.Input(shape=(inputs,))]
    for i, width in enumerate(hidden):
        layers.append(keras.layers.Dense(width, activation="relu"))
        if i == 0 and dropout > 0:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(1, activation=output))
    return keras.Sequential(layers)


def _history(fit: Any) -> dict[str, list[float]]:
    return {k: [float(x) for x in v] for k, v in fit.history.items()}


def train_risk_classifier_keras(
    data: ModelData, params: TrainingParams, on_epoch: EpochCallback | None = None
) -> TrainedModel:
    """Keras MLP for P(failure within horizon), class-weighted, early-stopped on val PR-AUC."""
    import keras

    _seed_everything(params.seed)
    scaler = Standardizer.fit(data.train.X)
    y = data.train.label
    counts = np.bincount(y, minlength=2)
    class_weight = {c: float(len(y) / (2.0 * counts[c])) for c in (0, 1)}
    model = _mlp(len(data.features), params.hidden, params.dropout, "sigmoid")
    model.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(curve="PR", name="pr_auc")],
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_pr_auc", mode="max", patience=params.patience, restore_best_weights=True
    )
    fit = model.fit(
        scaler.transform(data.train.X),
        y.astype(np.float32),
        validation_data=(scaler.transform(data.validation.X), data.validation.label),
        epochs=params.epochs,
        batch_size=params.batch_size,
        class_weight=class_weight,
        callbacks=[stop, _epoch_callback(on_epoch)],
        verbose=0,
    )
    return TrainedModel(
        "risk_classifier", "keras", model, scaler, list(data.features),
        params={**params.to_dict(), "class_weight_positive": class_weight[1]},
        history=_history(fit),
    )  # fmt: skip


def train_rul_regressor_keras(
    data: ModelData, params: TrainingParams, on_epoch: EpochCallback | None = None
) -> TrainedModel:
    """Keras MLP for the capped RUL (trained on rul / cap), early-stopped on validation loss."""
    import keras

    if not data.has_rul:
        raise TrainingDataError("the training set has no RUL labels; no RUL model can be trained")
    _seed_everything(params.seed)
    scaler = Standardizer.fit(data.train.X)
    cap = params.rul_cap
    model = _mlp(len(data.features), params.hidden, params.dropout, "linear")
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss="mse")
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", mode="min", patience=params.patience, restore_best_weights=True
    )
    fit = model.fit(
        scaler.transform(data.train.X),
        (np.minimum(data.train.rul, cap) / cap).astype(np.float32),
        validation_data=(
            scaler.transform(data.validation.X),
            (np.minimum(data.validation.rul, cap) / cap).astype(np.float32),
        ),
        epochs=params.epochs,
        batch_size=params.batch_size,
        callbacks=[stop, _epoch_callback(on_epoch)],
        verbose=0,
    )
    return TrainedModel(
        "rul_regressor", "keras", model, scaler, list(data.features),
        params=params.to_dict(), history=_history(fit), extra={"rul_cap": cap},
    )  # fmt: skip


def healthy_mask(label: np.ndarray, rul: np.ndarray, horizon: int, margin: float) -> np.ndarray:
    """Readings that count as healthy: no failure label, and far from failure where RUL is known."""
    far = np.where(np.isfinite(rul), rul > margin * horizon, True)
    return (label == 0) & far


def train_anomaly_detector_keras(
    data: ModelData, params: TrainingParams, on_epoch: EpochCallback | None = None
) -> TrainedModel:
    """Autoencoder on healthy readings; alert threshold from a healthy validation quantile."""
    import keras

    _seed_everything(params.seed)
    train_ok = healthy_mask(data.train.label, data.train.rul, params.horizon, params.healthy_margin)
    val_ok = healthy_mask(
        data.validation.label, data.validation.rul, params.horizon, params.healthy_margin
    )
    if train_ok.sum() < 10 or val_ok.sum() < 10:
        raise TrainingDataError("too few healthy readings (< 10) to train the anomaly detector")
    scaler = Standardizer.fit(data.train.X[train_ok])
    n = len(data.features)
    width = max(8, min(64, n // 2))
    bottleneck = max(4, min(16, n // 8))
    model = keras.Sequential(
        [
            keras.Input(shape=(n,)),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(bottleneck, activation="relu"),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(n),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss="mse")
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", mode="min", patience=params.patience, restore_best_weights=True
    )
    x_train = scaler.transform(data.train.X[train_ok])
    x_val = scaler.transform(data.validation.X[val_ok])
    fit = model.fit(
        x_train, x_train, validation_data=(x_val, x_val), epochs=params.epochs,
        batch_size=params.batch_size, callbacks=[stop, _epoch_callback(on_epoch)], verbose=0,
    )  # fmt: skip
    trained = TrainedModel(
        "anomaly_detector", "keras", model, scaler, list(data.features),
        params={**params.to_dict(), "healthy_train_rows": int(train_ok.sum())},
        history=_history(fit),
    )  # fmt: skip
    healthy_scores = trained.predict(data.validation.X[val_ok])
    trained.extra["threshold"] = float(np.quantile(healthy_scores, params.anomaly_quantile))
    return trained


def train_risk_classifier_sklearn(
    data: ModelData, params: TrainingParams, on_epoch: EpochCallback | None = None
) -> TrainedModel:
    """HistGradientBoosting baseline for P(failure within horizon), class-balanced."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    scaler = Standardizer.fit(data.train.X)
    model = HistGradientBoostingClassifier(
        max_iter=params.boosting_iterations, learning_rate=0.1, class_weight="balanced",
        early_stopping=True, validation_fraction=0.1, random_state=params.seed,
    )  # fmt: skip
    model.fit(scaler.transform(data.train.X), data.train.label)
    history = _boosting_history(model, on_epoch)
    return TrainedModel(
        "risk_classifier", "sklearn", model, scaler, list(data.features),
        params={**params.to_dict(), "iterations_run": int(model.n_iter_)}, history=history,
    )  # fmt: skip


def train_rul_regressor_sklearn(
    data: ModelData, params: TrainingParams, on_epoch: EpochCallback | None = None
) -> TrainedModel:
    """HistGradientBoosting baseline for the capped RUL."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    if not data.has_rul:
        raise TrainingDataError("the training set has no RUL labels; no RUL model can be trained")
    scaler = Standardizer.fit(data.train.X)
    model = HistGradientBoostingRegressor(
        max_iter=params.boosting_iterations, learning_rate=0.1, early_stopping=True,
        validation_fraction=0.1, random_state=params.seed,
    )  # fmt: skip
    model.fit(scaler.transform(data.train.X), np.minimum(data.train.rul, params.rul_cap))
    history = _boosting_history(model, on_epoch)
    return TrainedModel(
        "rul_regressor", "sklearn", model, scaler, list(data.features),
        params={**params.to_dict(), "iterations_run": int(model.n_iter_)}, history=history,
        extra={"rul_cap": params.rul_cap},
    )  # fmt: skip


@dataclass(frozen=True)
class EnsembleParams(TrainingParams):
    """Hyperparameters of the averaged RUL regressor: the shared ones plus its own.

    ``epochs``, ``batch_size`` and ``hidden`` apply to its network member and get their own
    defaults here. Defaults were chosen on C-MAPSS FD001 validation engines only
    (``benchmarks/select_rul_ensemble.py``; figures in BENCHMARKS.md).

    Attributes:
        member_stats: Window statistics the members read (other columns are always read);
            empty: every column.
        network_weight: Weight of the networks in the average; the boosting member gets the
            rest.
        network_members: Networks trained with different seeds (``seed``, ``seed + 1000``,
            ...) that share the network weight equally: averaging them removes most of one
            network's seed-to-seed spread.
    """

    epochs: int = 100
    batch_size: int = 128
    hidden: tuple[int, ...] = (128, 64)
    member_stats: tuple[str, ...] = ("mean", "slope")
    network_weight: float = 0.5
    network_members: int = 3

    def to_dict(self) -> dict[str, Any]:
        """Flat dict for MLflow params."""
        out = super().to_dict()
        out["member_stats"] = ",".join(self.member_stats) or "all"
        return out

    def shared(self) -> TrainingParams:
        """The shared hyperparameters alone (what each member's trainer takes)."""
        return TrainingParams(**{f.name: getattr(self, f.name) for f in fields(TrainingParams)})


def train_rul_regressor_ensemble(
    data: ModelData, params: TrainingParams, on_epoch: EpochCallback | None = None
) -> TrainedModel:
    """Average of a HistGradientBoosting and a Keras MLP RUL regressor, on ``member_stats``.

    Both members are trained by :func:`train_rul_regressor_sklearn` and
    :func:`train_rul_regressor_keras` on the same train rows (the network early-stopped on
    validation loss); the weights are fixed by ``network_weight``, not fitted.
    """
    from pdm_core.models.ensemble import AveragedRegressor, member_columns

    if not isinstance(params, EnsembleParams):
        raise TypeError(f"the averaged RUL regressor needs EnsembleParams, got {type(params)}")
    if not 0.0 <= params.network_weight <= 1.0:
        raise ValueError(f"network_weight must be in [0, 1], got {params.network_weight}")
    if params.network_members < 1:
        raise ValueError(f"network_members must be >= 1, got {params.network_members}")
    if not data.has_rul:
        raise TrainingDataError("the training set has no RUL labels; no RUL model can be trained")
    columns = member_columns(data.features, params.member_stats or None)
    sub = ModelData(
        [data.features[i] for i in columns],
        *(
            SplitData(s.X[:, columns], s.label, s.rul, s.keys)
            for s in (data.train, data.validation, data.test)
        ),
    )
    shared = params.shared()
    boosting = train_rul_regressor_sklearn(sub, shared)
    networks = [
        train_rul_regressor_keras(sub, replace(shared, seed=shared.seed + 1000 * k), on_epoch)
        for k in range(params.network_members)
    ]
    share = params.network_weight / len(networks)
    return AveragedRegressor.average(
        [boosting, *networks],
        [1.0 - params.network_weight, *(share for _ in networks)],
        list(data.features),
        params={
            **params.to_dict(),
            "member_features": len(columns),
            "boosting_iterations_run": boosting.params["iterations_run"],
            "network_epochs_run": ",".join(str(len(n.history.get("loss", []))) for n in networks),
        },
    )
