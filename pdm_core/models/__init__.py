"""Model training and the champion bundle (Dagster-free; TensorFlow is imported lazily)."""
