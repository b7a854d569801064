"""Pure, Dagster-free core of the platform.

Everything here takes and returns plain pandas/numpy objects so that the Dagster assets,
the BentoML service and the benchmarks share one implementation. Nothing in this package may
import Dagster, TensorFlow or Evidently at module level.
"""
