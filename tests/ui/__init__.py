"""Browser tests of the user interfaces (Dagster UI, Evidently report, MLflow UI)."""
