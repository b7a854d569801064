"""Operating values of a trained component, chosen on the validation machines.

Weights come from the train machines; what turns a component's raw output into something a
user acts on (a calibrated probability and its alert threshold, a RUL interval) is chosen on
validation machines the component never saw, so the test split stays untouched.
"""

from __future__ import annotations

from pdm_core import metrics
from pdm_core.models.data import ModelData
from pdm_core.models.trained import TrainedModel


def choose_operating_values(model: TrainedModel, data: ModelData) -> None:
    """Sets what a component needs beyond its weights, from the validation machines.

    A classifier is calibrated (:mod:`pdm_core.models.calibration` makes
    ``failure_probability`` a probability that the risk levels can cut at fixed values) and
    gets its F1-best operating threshold on the calibrated scores. A RUL regressor gets its
    prediction interval (:mod:`pdm_core.models.rul_interval`).
    """
    if model.kind == "rul_regressor":
        from pdm_core.models.rul_interval import fit_rul_interval

        predicted = model.predict(data.validation.X)
        cap = float(model.extra["rul_cap"])
        interval = fit_rul_interval(predicted, data.validation.rul, cap)
        model.extra["rul_interval"] = interval.to_dict()
    if model.kind == "risk_classifier":
        from pdm_core.models.calibration import fit_platt

        raw = model.raw_probability(data.validation.X)
        model.extra.update(fit_platt(raw, data.validation.label) or {})
        score = model.predict(data.validation.X)
        model.extra["threshold"] = metrics.best_f1_threshold(data.validation.label, score)
