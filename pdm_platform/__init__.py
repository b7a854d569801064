"""The platform as people run it: the Dagster definitions, the command-line programs, the demos.

This is the top room: it wires the asset graph (:mod:`pdm_assets`), the sensors and schedules
(:mod:`sensors_schedules`) and the resources (:mod:`pdm_resources`) together, and nothing
below imports it.
"""
